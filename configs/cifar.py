"""CIFAR-10, SVHN and STL-10 on the P400 protocol of AugLocal/HPFF/MAN/MLAAN (docs/methods.md
§10.5): `--config=configs/cifar.py:<dataset>,<depth>,<K>,<method>[,<plugin>]`, or the cell's
name `<dataset>_r<depth>_k<K>_<method>[_<plugin>]` (BP: `<dataset>_r<depth>_bp`), the naming of
the published rows.

- dataset: cifar10 | svhn | stl10; depth: 32 | 110 (CIFAR ResNet).
- K: the papers' K label. Bases and plug-ins use convention-B splits (docs/methods.md §3.1):
  ResNet-32 K = 8 | 16 (8 | 15 modules), ResNet-110 K = 32 | 55 (32 | 54 modules); AugLocal
  uses convention C with K reduced by its auxiliary depth d (ResNet-32 K=16 d=2: 14 modules,
  ResNet-110 K=55 d=3: 52 modules); BP takes K = 1.
- method: bp | greedy | dgl | infopro | predsim | auglocal; plugin: none | hpff | mlaan | man.

Recipe: 400 epochs; batch 1024 / lr0 0.8 on CIFAR-10 and SVHN, batch 128 / lr0 0.1 on STL-10; SGD
Nesterov 0.9, wd 1e-4, warm-up blend + cosine (§10.3). Base heads: DGL uses the MAN++/MLAAN
"auxDGL" head (§4.3c); InfoPro alone the paper's contrast/1c2f recipe with the K=16 λ row of
§5.1 at every K of the net ([decision]: the plug-in papers do not list theirs); PredSim β = 0.99
(§4.4). Plug-ins (common.plugin_recipe, docs/methods.md §7-§9): HPFF HiLo k=2, λ hpff_kcli (Q5);
MLAAN MLM k=3, LAM with the published leap lists, r = 0.995; MAN m = 0.995, independent copies
(Q14). Every published CIFAR row of third_party/published_rows.csv is one of these cells.
"""
import re

from configs import common

SPLITS = {(32, 8): "r32_k8_hpff", (32, 16): "r32_k16_hpff", (110, 32): "r110_k32_hpff",
          (110, 55): "r110_k55_hpff"}
AUGLOCAL = {(32, 16): ("r32_k16_auglocal", 2), (110, 55): ("r110_k55_auglocal", 3)}
# InfoPro (ixx_1, ixy_1, ixx_2, ixy_2), the K=16 row of docs/methods.md §5.1; R32 rows only exist
# for CIFAR-10, so SVHN/STL-10 ResNet-32 reuse the CIFAR-10 ResNet-32 row.
INFOPRO_LAMBDAS = {
    ("cifar10", 32): (5, 0.05, 0.2, 0.5), ("cifar10", 110): (5, 0, 0.5, 1),
    ("svhn", 32): (5, 0.05, 0.2, 0.5), ("svhn", 110): (5, 0.2, 0.5, 1),
    ("stl10", 32): (5, 0.05, 0.2, 0.5), ("stl10", 110): (20, 0.5, 10, 0.1),
}
DATASETS = ("cifar10", "svhn", "stl10")
NAME = re.compile(r"^([a-z0-9]+)_r(\d+)(?:_k(\d+))?_([a-z]+)(?:_([a-z]+))?$")


def split_preset(depth: int, k: int, method: str) -> str:
  """The split preset of (depth, K) for `method`; ValueError names the valid K."""
  if method == "bp":
    if k != 1:
      raise ValueError(f"configs/cifar.py: bp trains one module, so K must be 1 (got {k})")
    return "uniform_k1"
  table = AUGLOCAL if method == "auglocal" else SPLITS
  if (depth, k) not in table:
    valid = ", ".join(f"ResNet-{d} K={kk}" for d, kk in table)
    raise ValueError(f"configs/cifar.py: no {method} split for ResNet-{depth} K={k}; "
                     f"published: {valid}")
  return table[(depth, k)][0] if method == "auglocal" else table[(depth, k)]


def get_cifar_config(dataset: str, depth: int, k: int, method: str, plugin: str = "none"):
  """The P400 config of one cell (see the module docstring)."""
  if dataset not in DATASETS:
    raise ValueError(f"configs/cifar.py: dataset {dataset!r} is not one of {DATASETS}")
  if plugin != "none" and method in ("bp", "auglocal"):
    raise ValueError(f"configs/cifar.py: {method} takes no plug-in (got {plugin!r})")
  c = common.get_config(method, plugin)
  c.num_epochs = 400
  c.data.name = dataset
  c.data.num_classes = 10
  if dataset == "stl10":
    c.data.batch_size = c.data.eval_batch_size = 128
    c.optim.lr = 0.1
  else:
    c.data.batch_size, c.optim.lr = 1024, 0.8
  c.model.depth = depth
  c.split.preset = split_preset(depth, k, method)
  c.executor = common.executor_for(method)
  ixx_1, ixy_1, ixx_2, ixy_2 = INFOPRO_LAMBDAS[(dataset, depth)]
  common.set_selected(c.method, dgl_head="manpp", infopro=dict(
      loss_mode="contrast", classifier="1c2f", ixx_1=ixx_1, ixy_1=ixy_1, ixx_2=ixx_2, ixy_2=ixy_2))
  if method == "auglocal":
    c.method.auglocal.aux_depth = AUGLOCAL[(depth, k)][1]
  return common.plugin_recipe(c)


def parse(arg: str) -> tuple:
  """(dataset, depth, K, method, plugin) of "cifar10,110,55,infopro,mlaan" or of the name
  "cifar10_r110_k55_infopro_mlaan" ("cifar10_r32_bp": K = 1)."""
  m = NAME.match(arg)
  if m and "," not in arg:
    dataset, depth, k, method, plugin = m.groups()
    return dataset, int(depth), int(k or 1), method, plugin or "none"
  parts = arg.split(",")
  if len(parts) not in (4, 5):
    raise ValueError(f"configs/cifar.py:{arg}: expected <dataset>,<depth>,<K>,<method>"
                     f"[,<plugin>], e.g. cifar10,32,16,dgl,hpff")
  dataset, depth, k, method, *plugin = parts
  return dataset, int(depth), int(k), method, plugin[0] if plugin else "none"


def name(dataset: str, depth: int, k: int, method: str, plugin: str = "none") -> str:
  """The cell's name, e.g. "cifar10_r32_k16_dgl_hpff" or "cifar10_r32_bp"."""
  net = f"{dataset}_r{depth}" + ("" if method == "bp" else f"_k{k}")
  return f"{net}_{method}" + ("" if plugin == "none" else f"_{plugin}")


def get_config(arg: str = "cifar10,32,16,dgl,hpff"):
  """`<dataset>,<depth>,<K>,<method>[,<plugin>]` or the cell's name (see the module docstring)."""
  return get_cifar_config(*parse(arg or "cifar10,32,16,dgl,hpff"))
