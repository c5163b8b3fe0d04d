"""The CIFAR-10 configs of the published grid (issue 3) that the memory and speed benchmarks
cover by default: ResNet-32 "K=16" and ResNet-110 "K=55", each base alone and with each plugin,
and AugLocal. A name is a published row (third_party/published_rows.csv) or, for the cells no
paper reports (PredSim + MLAAN / MAN), a configs/cifar.py cell name."""
CIFAR10_GRID = tuple(f"cifar10_{net}_{base}{plugin}" for net in ("r32_k16", "r110_k55")
                     for plugin in ("", "_hpff", "_mlaan", "_man")
                     for base in ("dgl", "infopro", "predsim")) + (
    "cifar10_r32_k16_auglocal", "cifar10_r110_k55_auglocal",
)


def get_config(name: str):
  """The config of a published row name, else of a configs/cifar.py cell name."""
  from configs import cifar, published as published_configs
  from jax_local import published
  if name in published.names():
    return published_configs.get_config(name)
  return cifar.get_config(name)

