"""The P400 protocol of AugLocal/HPFF/MAN/MLAAN (docs/methods.md §10.5) for CIFAR-10, SVHN and STL-10.

400 epochs; batch 1024 / lr0 0.8 on CIFAR-10 and SVHN, batch 128 / lr0 0.1 on STL-10; SGD
Nesterov 0.9, wd 1e-4, warm-up blend + cosine (§10.3). Splits in convention B, the numbering of
the HPFF/MAN/MLAAN tables: ResNet-32 "K=16" is 15 modules, ResNet-110 "K=55" is 54.
Base heads: DGL uses the MAN++/MLAAN "auxDGL" head (§4.3c, the DGL baseline inside that family);
InfoPro the paper's contrast/1c2f recipe at K=16 (§5.1); PredSim β=0.99 (§4.4).
"""
from configs import common

SPLITS = {32: "r32_k16_hpff", 110: "r110_k55_hpff"}
# InfoPro (ixx_1, ixy_1, ixx_2, ixy_2) at K=16 (docs/methods.md §5.1); R32 rows only exist for CIFAR-10,
# so SVHN/STL-10 ResNet-32 reuse the CIFAR-10 ResNet-32 row.
INFOPRO_LAMBDAS = {
    ("cifar10", 32): (5, 0.05, 0.2, 0.5), ("cifar10", 110): (5, 0, 0.5, 1),
    ("svhn", 32): (5, 0.05, 0.2, 0.5), ("svhn", 110): (5, 0.2, 0.5, 1),
    ("stl10", 32): (5, 0.05, 0.2, 0.5), ("stl10", 110): (20, 0.5, 10, 0.1),
}


def executor_for(method: str) -> str:
  """Paper-size local runs: the sequential executor (0.07-0.30 of BP's memory at batch 1024
  where the fused step needs 0.26-1.48, BENCHMARKS.md); BP is one module, for which fused is
  the same program without the per-unit dispatch."""
  return "fused" if method == "bp" else "sequential"


def get_p400_config(dataset: str, depth: int, method: str):
  c = common.get_config()
  c.num_epochs = 400
  c.data.name = dataset
  c.data.num_classes = 10
  if dataset == "stl10":
    c.data.batch_size, c.optim.lr = 128, 0.1
    c.data.eval_batch_size = 128
  else:
    c.data.batch_size, c.optim.lr = 1024, 0.8
  c.model.depth = depth
  c.split.preset = SPLITS[depth]
  c.method.name = method
  c.executor = executor_for(method)
  c.method.dgl_head = "manpp"
  ip = c.method.infopro
  ip.loss_mode, ip.classifier = "contrast", "1c2f"
  ip.ixx_1, ip.ixy_1, ip.ixx_2, ip.ixy_2 = INFOPRO_LAMBDAS[(dataset, depth)]
  return c
