"""MLAAN, ResNet-34 "K=17" = 16 modules, stem merged into 1.0 (MLAAN Table II: 25.31 / 7.88;
BP 25.38 / 7.90). 150 epochs, batch 128, lr 0.05; zero-init bn2.γ (docs/methods.md §1.3)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r34", "greedy", "r34_k17_mlaan", "mlaan")
  c = imagenet_recipes.mlaan(c)
  c.model.zero_init_residual = True
  return c
