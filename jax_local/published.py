"""The published rows: `third_party/published_rows.csv`, one row per experiment that a paper
reports (network, K, split convention, method, plug-in, recipe) with the reported test error and
memory and where each number comes from (third_party/README.md).

Pure Python (no JAX): configs, tests, benchmarks, `launch.py --list_configs` and
`jax_local.compare` read it. A row's config is `configs/published.py:<name>`.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import os

TABLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "third_party",
                     "published_rows.csv")
PAPERS = {  # the `paper` column -> the citation (third_party/README.md gives the full entries)
    "infopro": "InfoPro (Wang et al., ICLR 2021)",
    "dgl": "DGL (Belilovsky et al., ICML 2020)",
    "auglocal": "AugLocal (Ma et al., ICLR 2024, arXiv 2402.17318)",
    "hpff": "HPFF (ECCV 2024, arXiv 2407.05638)",
    "mlaan": "MLAAN (Zhang et al., arXiv 2406.16633)",
    "man": "MAN (Su et al., ECCV 2024, arXiv 2407.05623)",
}
TAGS = {"P": "primary: the paper or the authors' repository",
        "S": "secondary: a third-party digest, unverified against the PDF",
        "-": "no number in the table"}


def _float(text: str) -> float | None:
  return float(text) if text else None


@dataclasses.dataclass(frozen=True)
class Row:
  """One published experiment. `k` is the paper's K label, `modules` the number of gradient-
  isolated modules its split builds here (they differ under convention B, docs/methods.md §3.1);
  errors are test error in % (ImageNet: top-1 / top-5 on the validation set), memory in GB as the
  paper reports it (docs/methods.md §11); None where the paper's number is not in the table."""
  name: str
  dataset: str
  net: str
  k: int
  modules: int
  convention: str
  split: str
  method: str
  plugin: str
  recipe: str
  top1_error: float | None
  top5_error: float | None
  error_std: float | None
  memory_gb: float | None
  paper: str
  table: str
  tag: str
  note: str

  @property
  def depth(self) -> int:
    """Depth of the network (r110 -> 110, resnext101 -> 101, vgg13 -> 13)."""
    return int(self.net.lstrip("abcdefghijklmnopqrstuvwxyz"))

  @property
  def citation(self) -> str:
    return f"{PAPERS[self.paper]}, {self.table}"

  @property
  def config(self) -> str:
    return f"configs/published.py:{self.name}"

  def label(self) -> str:
    """e.g. "dgl+hpff" or "bp"."""
    return self.method if self.plugin == "none" else f"{self.method}+{self.plugin}"


@functools.lru_cache(maxsize=None)
def rows() -> tuple[Row, ...]:
  """Every row of the table, in file order."""
  out = []
  with open(TABLE, newline="", encoding="utf-8") as f:
    for r in csv.DictReader(f):
      out.append(Row(
          name=r["name"], dataset=r["dataset"], net=r["net"], k=int(r["k"]),
          modules=int(r["modules"]), convention=r["convention"], split=r["split"],
          method=r["method"], plugin=r["plugin"], recipe=r["recipe"],
          top1_error=_float(r["top1_error"]), top5_error=_float(r["top5_error"]),
          error_std=_float(r["error_std"]), memory_gb=_float(r["memory_gb"]), paper=r["paper"],
          table=r["table"], tag=r["tag"], note=r["note"]))
  return tuple(out)


def names() -> list[str]:
  return [r.name for r in rows()]


def get(name: str) -> Row:
  """The row called `name`; KeyError lists the names that start like it."""
  for r in rows():
    if r.name == name:
      return r
  prefix = name.split("_")[0]
  near = [n for n in names() if n.startswith(prefix)] or names()
  raise KeyError(f"no published row {name!r} in {TABLE}; rows: {', '.join(near)}")


def net_name(arch: str, depth: int) -> str:
  """The table's `net` of a config's model: cifar_resnet/imagenet_resnet 101 -> r101,
  imagenet_resnext 101 -> resnext101, vgg 13 -> vgg13."""
  prefix = {"imagenet_resnext": "resnext", "vgg": "vgg"}.get(arch, "r")
  return f"{prefix}{depth}"


def match(dataset: str, arch: str, depth: int, split: str, method: str,
          plugin: str = "none") -> Row | None:
  """The row a run's config reproduces (same dataset, network, split, method and plug-in), or
  None. BP rows match any split preset, as BP trains one module."""
  net = net_name(arch, depth)
  for r in rows():
    if (r.dataset, r.net, r.method, r.plugin) == (dataset, net, method, plugin or "none") and (
        method == "bp" or r.split == split):
      return r
  return None


def format_error(row: Row) -> str:
  """"21.14 / 5.49", "6.36 ± 0.15", "9.11" or "-"."""
  if row.top1_error is None:
    return "-"
  text = f"{row.top1_error:g}"
  if row.error_std is not None:
    text += f" ± {row.error_std:g}"
  if row.top5_error is not None:
    text += f" / {row.top5_error:g}"
  return text


def listing() -> str:
  """One line per row: name, network, K (modules), method, recipe, published error and memory,
  citation; then the config forms that take arguments."""
  lines = [f"{'row (--config=configs/published.py:<row>)':<44} {'net':<10} {'K (mod.)':<9} "
           f"{'method':<16} {'recipe':<8} {'error %':<18} {'mem GB':<7} source"]
  for r in rows():
    k = "-" if r.method == "bp" else f"{r.k} ({r.modules})"
    mem = "-" if r.memory_gb is None else f"{r.memory_gb:g}"
    lines.append(f"{r.name:<44} {r.net:<10} {k:<9} {r.label():<16} {r.recipe:<8} "
                 f"{format_error(r):<18} {mem:<7} {r.citation} [{r.tag}]")
  lines += [
      "",
      f"{len(rows())} published rows (third_party/published_rows.csv). Configs with arguments:",
      "  configs/cifar.py:<dataset>,<depth>,<K>,<method>[,<plugin>]   the P400 protocol, any cell",
      "  configs/imagenet.py:<row> | <net>,<method>,<split>,<recipe>[,<plugin>]",
      "  configs/fashion_mnist.py:<method>[,<plugin>]                CPU scale (also "
      "fashion_mnist_grid.py)",
      "  configs/fashion_mnist_quickstart.py:<method>[,<plugin>]     the embedded default",
      "  configs/imagenet_r101_k4.py                                 the headline ImageNet row",
  ]
  return "\n".join(lines)
