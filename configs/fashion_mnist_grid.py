"""Any row of the Fashion-MNIST plugin table:
`--config=configs/fashion_mnist_grid.py:<base>,<plugin>` (default "dgl,none"), the same configs
as configs/fashion_mnist.py, kept under this name for the commands in BENCHMARKS.md and
benchmarks/."""
from configs import fashion_mnist


def get_config(arg: str = "dgl,none"):
  return fashion_mnist.get_config(arg or "dgl,none")
