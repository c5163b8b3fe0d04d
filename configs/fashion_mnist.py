"""Fashion-MNIST at CPU scale, the plug-in table of BENCHMARKS.md:
`--config=configs/fashion_mnist.py:<method>[,<plugin>]` (method: bp | greedy | dgl | infopro |
predsim | auglocal; plugin: none | hpff | mlaan | man; default "dgl").

First 10,000 training images, full test split, 3 epochs, batch 128, SGD Nesterov lr 0.1 cosine
per step (to 0), evaluated also with BN statistics re-estimated on 20 training batches; ResNet-14
cut one block per module with the stem merged into 1.0 ("blocks": 6 modules, convention B) —
AugLocal: stem alone ("blocks_stem": 7 layers, d=2, K_eff = 5 modules). bp and auglocal take no
plug-in. InfoPro alone uses its own recipe (CE, 1c2f, λ row of ResNet-32 K=16), with a plug-in
the plug-ins' recipe. Stage-3 maps are 7×7, so paper_shared_avg patches run `unrolled` (uneven
2x2 patches). BN running statistics are updated once per step in every row
(`replicate_bn_calls=False`, not the references' quirk Q23), so all rows share BP's rule.
"""
from configs import common


def get_fashion_mnist_config(base: str, plugin: str = "none"):
  c = common.cpu_fashion_mnist(common.get_config(base, plugin), epochs=3, depth=14)
  c.split.preset = "blocks_stem" if base == "auglocal" else "blocks"
  c.method.replicate_bn_calls = False
  # InfoPro alone: CE, 1c2f, the K=16 ResNet-32 λ row (5, 0.05, 0.2, 0.5)
  common.set_selected(c.method, dgl_head="manpp", auglocal=dict(aux_depth=2), infopro=dict(
      loss_mode="cross_entropy", classifier="1c2f", ixx_1=5.0, ixy_1=0.05, ixx_2=0.2, ixy_2=0.5))
  c = common.plugin_recipe(c, patch_loop="unrolled")
  if (base, plugin) == ("predsim", "hpff"):
    # PredSim's prediction head flattens a pooled map, so its parameters depend on the patch
    # size and one head cannot serve the unequal patches of a 7×7 map: HiLo without PFF
    c.method.pff.mode = "off"
  return c


def get_config(arg: str = "dgl"):
  base, _, plugin = (arg or "dgl").partition(",")
  return get_fashion_mnist_config(base, plugin or "none")
