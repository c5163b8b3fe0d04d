"""Plugin experiments: base (dgl | infopro | predsim | greedy) × plugin (hpff | mlaan | man), and
AugLocal, on the P400 protocol (docs/methods.md §10.5) or at CPU scale on Fashion-MNIST.

Recipes (docs/methods.md §7-§9, §10.5):
- InfoPro inside HPFF/MLAAN/MAN: the plugins' README flags `--local_loss_mode cross_entropy
  --ixx_1 5 --ixy_1 0.5 --ixx_2 0 --ixy_2 0`, aux classifier 2c2f; [decision] the same on SVHN and
  STL-10 (only the CIFAR-10 command is published).
- DGL: the MAN++/MLAAN "auxDGL" head (§4.3c); PredSim: β = 0.99 (§4.4).
- HPFF: HiLo k=2, λ schedule hpff_kcli (Q5); PFF code_quadrant_decoders with InfoPro, and
  paper_shared_avg on the classifier for DGL/PredSim (§7.4), whose patches run in `lax.scan`.
- MLAAN: MLM k=3 (paper, and the InfoPro/DGL MLAAN code), λ schedule man_stage (Q6), LAM with
  the published leap lists, r = 0.995, all EMA copies updated (Q7 fixed), copies start as copies.
- MAN: m = 0.995, λ schedule man_stage (Q6), LB and EMA copies independent draws (Q14).
- AugLocal (§6.3, `--rule AugLocal --pyramid --pyramid_coeff 0.5`): d = 2 on ResNet-32 K=16 and
  d = 3 on ResNet-110 K=55, convention-C splits, K reduced by d (Q3).
Named files (configs/<dataset>_r<depth>_k<K>_<base>_<plugin>.py) wrap `get_plugin_config`; this
file is also a config itself: `--config=configs/plugin_grid.py:cifar10,110,infopro,mlaan`.
"""
from configs import common, p400

BASES = ("greedy", "dgl", "infopro", "predsim")
PLUGINS = ("hpff", "mlaan", "man")
AUGLOCAL = {32: ("r32_k16_auglocal", 2), 110: ("r110_k55_auglocal", 3)}


def set_plugin(c, base: str, plugin: str, patch_loop: str = "scan"):
  """Sets config.method for base × plugin (plugin may be "none")."""
  c.method.name = base
  c.method.plugin = plugin
  if base == "infopro" and plugin != "none":
    ip = c.method.infopro
    ip.loss_mode, ip.classifier = "cross_entropy", "2c2f"
    ip.ixx_1, ip.ixy_1, ip.ixx_2, ip.ixy_2 = 5.0, 0.5, 0.0, 0.0
  if plugin == "hpff":
    if base == "infopro":
      c.method.pff.mode = "code_quadrant_decoders"
    else:
      c.method.pff.mode, c.method.pff.apply_to = "paper_shared_avg", "classifier"
    c.method.pff.patch_loop = patch_loop
  return c


def get_plugin_config(dataset: str, depth: int, base: str, plugin: str):
  """P400 config of base × plugin on CIFAR-10 / SVHN / STL-10 (convention-B splits: ResNet-32
  "K=16" = 15 modules, ResNet-110 "K=55" = 54 modules)."""
  return set_plugin(p400.get_p400_config(dataset, depth, base), base, plugin)


def get_auglocal_config(dataset: str, depth: int):
  """P400 AugLocal config (convention-C splits: 16 / 55 layers, K_eff = 14 / 52 modules)."""
  c = p400.get_p400_config(dataset, depth, "auglocal")
  c.split.preset, c.method.auglocal.aux_depth = AUGLOCAL[depth]
  return c


def get_fashion_mnist_config(base: str, plugin: str = "none"):
  """CPU scale: Fashion-MNIST (first 10,000 training images, full test split), 3 epochs, batch
  128, SGD Nesterov lr 0.1 cosine per step (to 0), evaluated also with BN statistics
  re-estimated on 20 training batches; ResNet-14 cut one block per module with the stem merged into
  1.0 ("blocks": 6 modules, convention B) — AugLocal: stem alone ("blocks_stem": 7 layers, d=2,
  K_eff = 5 modules). base may be "bp" or "auglocal" with plugin "none". InfoPro alone uses its
  own recipe (CE, 1c2f, λ row of ResNet-32 K=16), with a plugin the plugins' recipe. Stage-3 maps
  are 7×7, so paper_shared_avg patches run `unrolled` (uneven 2x2 patches).

  BN running statistics are updated once per step in every row (`replicate_bn_calls=False`, not
  the references' quirk Q23), so all rows share BP's rule; DGL+HPFF measured 26.91 % test error
  with Q23 and 26.58 % without (BENCHMARKS.md, Fashion-MNIST plugin table)."""
  c = common.get_config()
  c.num_epochs = 3
  c.data.name = "fashion_mnist"
  c.data.num_classes = 10
  c.data.batch_size = 128
  c.data.eval_batch_size = 1000
  c.data.train_subset = 10000
  c.model.depth = 14
  c.split.preset = "blocks_stem" if base == "auglocal" else "blocks"
  c.method.dgl_head = "manpp"
  c.method.replicate_bn_calls = False
  ip = c.method.infopro  # InfoPro alone: CE, 1c2f, the K=16 ResNet-32 λ row (5, 0.05, 0.2, 0.5)
  ip.loss_mode, ip.classifier = "cross_entropy", "1c2f"
  ip.ixx_1, ip.ixy_1, ip.ixx_2, ip.ixy_2 = 5.0, 0.05, 0.2, 0.5
  c.method.auglocal.aux_depth = 2
  c.optim.lr = 0.1
  c.optim.schedule = "cosine"
  c.optim.schedule_unit = "step"
  c.eval.bn_recompute_batches = 20
  c.log_every_steps = 20
  c = set_plugin(c, base, plugin, patch_loop="unrolled")
  if (base, plugin) == ("predsim", "hpff"):
    # PredSim's prediction head flattens a pooled map, so its parameters depend on the patch
    # size and one head cannot serve the unequal patches of a 7×7 map: HiLo without PFF
    c.method.pff.mode = "off"
  return c


def get_config(arg: str = "cifar10,32,dgl,hpff"):
  """Any P400 cell: `--config=configs/plugin_grid.py:<dataset>,<depth>,<base>,<plugin>`
  (dataset cifar10 | svhn | stl10, depth 32 | 110; base auglocal takes no plugin)."""
  dataset, depth, base, *plugin = (arg or "cifar10,32,dgl,hpff").split(",")
  if base == "auglocal":
    return get_auglocal_config(dataset, int(depth))
  return get_plugin_config(dataset, int(depth), base, plugin[0] if plugin else "none")
