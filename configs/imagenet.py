"""ImageNet (docs/methods.md §10.8): `--config=configs/imagenet.py:<row>` for a published row
(`imagenet_r101_k4_infopro_hpff` or `r101_k4_infopro_hpff`, third_party/published_rows.csv), or
`--config=configs/imagenet.py:<net>,<method>,<split>,<recipe>[,<plugin>]` for any other
combination, e.g. `r152,infopro,r152_k8_hpff,hpff,hpff` (InfoPro + HPFF, ResNet-152 K=8).

All: tfds `imagenet2012` at 224 px (§10.2), 1000 classes, SGD momentum 0.9 with Nesterov, wd 1e-4
on every parameter, LR 0.5·lr0·(1 + cos(π·epoch/E)) per epoch without warm-up (`optim.schedule =
"cosine"`, §10.3), except the DGL recipe. [decision] data.drop_remainder = True on ImageNet (1.28M
images: the partial batch would cost a second compilation of a large net for < 0.01 % of an epoch).

| recipe   | epochs | global batch / lr0                          | source                        |
|----------|--------|---------------------------------------------|-------------------------------|
| infopro  | 90     | 1024 / 0.4 (ResNeXt: 512 / 0.2 [decision])  | InfoPro README, Table 4       |
| hpff     | 90     | 128 / 0.05 (ResNeXt and VGG-13: 64 / 0.025) | HPFF imagenet_DDP.py          |
| man      | 90     | 128 / 0.05                                  | MAN README                    |
| mlaan    | 150    | 128 / 0.05                                  | MLAAN paper, run.txt          |
| auglocal | 200    | 1024 / 0.4                                  | AugLocal exp_imagenet/run.sh  |
| dgl      | 50     | 256 / 0.1, ÷10 every 10 epochs, no Nesterov | DGL imagenet_dgl.py (§10.7)   |
ResNeXt under InfoPro: the README command uses 1024 / 0.4, the paper's table says batch 512; we
keep 512 and scale the LR linearly. BP baselines use the recipe of the local method they are
compared with (§6.1): the published BP numbers (InfoPro Table 4) ran at 1024 / 0.4, the same LR
per image as 128 / 0.05.

Per method and plug-in (`METHOD_RULES`): InfoPro uses softmax CE with the InfoPro ImageNet heads
and loss 5·BCE + 0.75·CE (ResNet-152 under the InfoPro recipe: 5·BCE + 1.0·CE, §5.2); AugLocal
aux depth 4, no pyramid, no K reduction (§6.3); MLAAN on ResNet-34 zero-initialises bn2.γ (§1.3).
"""
from configs import common
from jax_local import published

RECIPES = {  # name -> (epochs, batch, lr0)
    "infopro": (90, 1024, 0.4), "hpff": (90, 128, 0.05), "man": (90, 128, 0.05),
    "mlaan": (150, 128, 0.05), "auglocal": (200, 1024, 0.4), "dgl": (50, 256, 0.1),
}
SMALL_BATCH = {"infopro": (512, 0.2), "hpff": (64, 0.025)}  # ResNeXt-101 (and VGG-13 under hpff)
ARCHS = {  # net -> (model.arch, model.depth)
    "r34": ("imagenet_resnet", 34), "r101": ("imagenet_resnet", 101),
    "r152": ("imagenet_resnet", 152), "resnext101": ("imagenet_resnext", 101), "vgg13": ("vgg", 13),
}


def base_config(net: str, method: str, preset: str, recipe: str, plugin: str = "none"):
  """Common ImageNet config of `net` (a key of ARCHS) trained by `method` (+ `plugin`) on split
  `preset`."""
  c = common.get_config(method, plugin)
  epochs, batch, lr = RECIPES[recipe]
  if net in ("resnext101", "vgg13") and recipe in SMALL_BATCH:
    batch, lr = SMALL_BATCH[recipe]
  c.num_epochs = epochs
  c.data.name = "imagenet2012"
  c.data.num_classes = 1000
  c.data.image_size = 224
  c.data.batch_size = c.data.eval_batch_size = batch
  c.data.drop_remainder = True
  c.data.shuffle_buffer = 16384
  c.model.arch, c.model.depth = ARCHS[net]
  c.model.zero_init_residual = False    # on only for MLAAN ResNet-34 (docs/methods.md §1.3)
  if net == "resnext101":
    c.model.groups, c.model.width_per_group = 32, 8
  c.split.preset = preset
  c.executor = common.executor_for(method)
  # DGL ImageNet heads: n_lin 3 (1x1), mlp 3 (§4.3a); ImageNet InfoPro: softmax CE, ImageNet
  # heads (§4.6), 5·BCE + 0.75·CE, but 5·BCE + 1.0·CE in InfoPro's ResNet-152 command (§5.2)
  common.set_selected(c.method, dgl_head="mlp-sr", infopro=dict(
      loss_mode="cross_entropy", head_family="imagenet_infopro", ixx_1=5.0,
      ixy_1=1.0 if (net, recipe) == ("r152", "infopro") else 0.75, ixx_2=0.0, ixy_2=0.0))
  if method == "auglocal":              # AugLocal's ImageNet code (§6.3)
    al = c.method.auglocal
    al.aux_depth, al.pyramid, al.subtract_depth_from_k = 4, False, False
  c.optim.lr = lr
  c.optim.schedule = "cosine"
  c.optim.warmup_epochs = 0
  c.optim.nesterov = True
  c.optim.weight_decay = 1e-4
  if recipe == "dgl":
    c.optim.nesterov = False              # DGL: momentum 0.9, Nesterov not stated
    c.optim.schedule = "milestones"       # lr0·0.1^⌊epoch/10⌋ (0-based epoch)
    c.optim.milestones = (10, 20, 30, 40)
    c.optim.milestone_factor = 0.1
  c.log_every_steps = 100
  return c


def hpff(c):
  """InfoPro + HPFF as in `HPFF Exp on Imagenet/networks/resnetInfoPro_HPFF.py:224-313` (§7.3).

  Cascade-only HiLo (k = 2): the independent path is commented out there, so w_ind = 0 and
  w_cas = 1; cascade j: 5·Σ_quadrants BCE(decoder(z)) + 0.75·CE(classifier(z)) with the HPFF
  decoders/classifiers (head_family imagenet_hpff does the quadrant sum on the decoded image, so
  pff.mode is off: there is no feature-map patching on ImageNet); the last step is
  CE(fc(E_{L-1}(E_{L-2}(sg a_{L-2})))) alone (final_x_loss = dropped). λ is constant (Q5 unused).
  With a DGL base (no published code): HiLo k=2 with weights 0.001/0.999, constant λ, and PFF on
  the classifier with shared patch nets (§7.4 [decision], "HPFF-style, project reconstruction").
  """
  if c.method.name == "dgl":
    c.method.hilo.lambda_schedule = "constant"
    c.method.pff.mode, c.method.pff.apply_to = "paper_shared_avg", "classifier"
    return c
  c.method.infopro.head_family = "imagenet_hpff"
  h = c.method.hilo
  h.k, h.w_ind, h.w_cas = 2, 0.0, 1.0
  h.lambda_schedule = "constant"
  h.final_x_loss = "dropped"
  c.method.pff.mode = "off"
  return c


def man(c):
  """InfoPro + MAN as `MAN Exp on ImageNet/networks/resnetInfoPro_MAN.py:263-287` (§9.2):
  y = LB(h) + EMA(h) with copies of the next block (independent draws, Q14), m = 0.995,
  loss 5·BCE + 0.75·CE (constant λ) on the InfoPro ImageNet heads."""
  m = c.method.man
  m.variant, m.bias_form, m.copy_init = "man", "parallel_block", "independent"
  m.ema_decay = 0.995
  m.lambda_schedule = "constant"
  return c


def mlaan(c):
  """MLAAN on ImageNet (§8.1-§8.3): MLM k = 3 with weights 0.001 / 0.999, LAM with EMA 0.995 on
  every module, copies as independent draws (Q14), CE-only GAP-FC heads (base greedy: the CAN and
  the 256/512-wide IAN of `MLAAN ImageNet/networks/auxnet34.py`); ResNet-34 zero-initialises the
  last BN γ of each block (§1.3)."""
  c.method.mlm.k, c.method.mlm.w_ind, c.method.mlm.w_cas = 3, 0.001, 0.999
  c.method.mlm.final_x_loss = "weighted"
  c.method.mlm.lambda_schedule = "constant"
  lam = c.method.lam
  lam.ema_decay, lam.ema_update, lam.ema_at = 0.995, "all", "first"
  lam.copy_init, lam.leap_lists = "independent", "auto"
  c.model.zero_init_residual = c.model.depth == 34 and c.model.arch == "imagenet_resnet"
  return c


PLUGINS = {"none": lambda c: c, "hpff": hpff, "man": man, "mlaan": mlaan}


def get_imagenet_config(net: str, method: str, preset: str, recipe: str, plugin: str = "none"):
  """The config of `method` (+ `plugin`) on `net`, split `preset`, under `recipe`."""
  return PLUGINS[plugin](base_config(net, method, preset, recipe, plugin))


def from_row(row: published.Row):
  """The config of a published ImageNet row."""
  return get_imagenet_config(row.net, row.method, row.split, row.recipe, row.plugin)


def get_config(arg: str = "imagenet_r101_k4_infopro_hpff"):
  """`<row>` (with or without the "imagenet_" prefix) or `<net>,<method>,<split>,<recipe>
  [,<plugin>]`."""
  arg = arg or "imagenet_r101_k4_infopro_hpff"
  if "," in arg:
    net, method, preset, recipe, *plugin = arg.split(",")
    return get_imagenet_config(net, method, preset, recipe, plugin[0] if plugin else "none")
  name = arg if arg.startswith("imagenet_") else f"imagenet_{arg}"
  return from_row(published.get(name))
