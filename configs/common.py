"""Shared defaults of every experiment config, and the helpers the config files share.

Experiment files (configs/cifar.py, imagenet.py, fashion_mnist.py, ...) call
get_config(method, plugin) and override; `config.method` holds the fields of that base and
plug-in only (`jax_local.experiment.method_config`), and `set_selected` sets those of a recipe
that the selection holds.

The defaults are the InfoPro-family CIFAR recipe (docs/methods.md §10.4/§10.5): SGD Nesterov 0.9,
weight decay 1e-4 on all parameters, per-epoch warm-up blend into cosine, batch 1024, lr0 0.8.
"""
import ml_collections

from jax_local import experiment


def get_config(method: str = "infopro", plugin: str = "none"):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_epochs = 400

  c.data = ml_collections.ConfigDict()
  c.data.name = "cifar10"          # fashion_mnist | cifar10 | svhn | stl10 | image_folder
  c.data.tfds_data_dir = ""        # "" = tfds default (~/tensorflow_datasets or $TFDS_DATA_DIR)
  c.data.manual_dir = ""           # fashion_mnist: "" = /usr/share/datasets/fashion-mnist
  c.data.folder_root = ""          # image_folder: root/<split>/<class>/*.jpg|png
  c.data.image_size = 0            # image_folder: square resize; 0 = dataset's own size
  c.data.num_classes = 10
  c.data.batch_size = 1024         # global training batch
  c.data.eval_batch_size = 1024
  c.data.drop_remainder = False    # False keeps the partial last batch, as the reference loaders
  c.data.train_subset = 0          # >0: train on the first N training examples (CPU-scale runs)
  c.data.test_subset = 0           # >0: evaluate on the first N test examples (smoke tests)
  c.data.validation_size = 0       # >0: hold N training examples out (the same N for every
  #                                  seed) to select the best checkpoint (README "What a
  #                                  workdir holds"); 0 = train on all, no best checkpoint
  c.data.augment = True
  c.data.on_bad_image = "fail"     # image_folder, undecodable files: fail | skip (both list paths)

  c.model = ml_collections.ConfigDict()
  c.model.arch = "cifar_resnet"
  c.model.depth = 32
  c.model.shortcut = "projection"  # projection | zero_pad (DGL ddg_comparison only)
  c.model.dtype = "float32"        # compute dtype: float32 | bfloat16 (params, optimizer, BN
  #                                  statistics and losses stay float32)
  c.model.bn_stats = "global"      # BN batch statistics in training: global (over the whole
  #                                  global batch, sync-BN) | per_device (each data shard's own,
  #                                  as the PyTorch references on several GPUs)

  c.split = ml_collections.ConfigDict()
  c.split.preset = "r32_k16_hpff"  # a name from jax_local.splits.PRESETS

  # the selected base's and plug-in's fields only, at their defaults (jax_local/methods/<name>.py,
  # jax_local/plugins/<name>.py): an option of another method is an error
  c.method = experiment.method_config(method, plugin)

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"             # sgd | adam
  c.optim.lr = 0.8
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.weight_decay = 1e-4
  c.optim.schedule = "warmup_cosine"   # warmup_cosine | step | cosine | milestones | constant
  c.optim.schedule_unit = "epoch"      # epoch (the papers': constant within an epoch) | step
  c.optim.warmup_epochs = 10
  c.optim.step_epochs = (80, 120)      # schedule=step: x0.1 at these epochs
  c.optim.milestones = (200, 300, 350, 375)  # schedule=milestones: x milestone_factor
  c.optim.milestone_factor = 0.25

  c.executor = "fused"             # fused | sequential | pipelined (docs/design.md §3.5-§3.9)
  c.pipeline = ml_collections.ConfigDict()  # executor=pipelined only
  c.pipeline.stages = 2            # S: rows of a ('stage', 'data') mesh over the devices
  c.pipeline.boundaries = ()       # first module of stages 1..S-1; () = balanced by FLOPs
  c.pipeline.mode = "sync"         # sync (one update per step) | async (one per micro-batch)
  c.pipeline.microbatches = 4      # M: the global batch in M micro-batches
  c.log_every_steps = 50
  c.eval_every_epochs = 1
  c.eval = ml_collections.ConfigDict()
  c.eval.bn_recompute_batches = 0  # >0: also evaluate with BN statistics re-estimated over this
  #                                  many augmented training batches (README "Two test errors")
  c.eval.local_heads = True        # also the test accuracy of every local head (layer-wise)
  c.checkpoint_every_steps = 0     # 0: at the end of every epoch only
  c.max_checkpoints_to_keep = 3
  c.on_nonfinite = "stop"          # stop | skip (undo the step; costs a state copy per step)
  c.max_skipped_fraction = 0.01    # skip: the run fails (exit 4) once it skipped more than
  #                                  this share of its steps
  return c


def cpu_fashion_mnist(c, epochs: int, depth: int, train_images: int = 10000):
  """Sets the CPU-scale Fashion-MNIST recipe shared by the quickstart and the plug-in table:
  Debian's Fashion-MNIST (first `train_images` training images, full test split), batch 128, a
  CIFAR ResNet of `depth`, SGD lr 0.1 with a per-step cosine to 0, and every evaluation also
  with BN statistics re-estimated on 20 training batches (README "Two test errors")."""
  c.num_epochs = epochs
  c.data.name = "fashion_mnist"
  c.data.num_classes = 10
  c.data.batch_size = 128
  c.data.eval_batch_size = 1000
  c.data.train_subset = train_images
  c.model.depth = depth
  c.optim.lr = 0.1
  c.optim.schedule = "cosine"
  c.optim.schedule_unit = "step"
  c.eval.bn_recompute_batches = 20
  c.log_every_steps = 20
  return c


def executor_for(method: str) -> str:
  """Paper-size local runs use the sequential executor (one module's activations live at a
  time, BENCHMARKS.md); BP is one module, for which fused is the same program without the
  per-unit dispatch."""
  return "fused" if method == "bp" else "sequential"


def set_selected(mc, **fields):
  """Sets the fields of `mc` (config.method) that the selection holds; a dict value updates a
  section. Fields of unselected bases and plug-ins are not in `mc` and are skipped."""
  for field, value in fields.items():
    if field in mc:
      if isinstance(value, dict):
        mc[field].update(value)
      else:
        mc[field] = value
  return mc


def plugin_recipe(c, patch_loop: str = "scan"):
  """The CIFAR-shape plug-in recipes of config.method's base × plugin: InfoPro inside a plug-in
  uses the plug-ins' README flags (CE, 2c2f, λ (5, 0.5, 0, 0)); HPFF's PFF is
  code_quadrant_decoders with InfoPro and paper_shared_avg on the classifier for the other bases
  (docs/methods.md §7.4), its patch nets run by `patch_loop`."""
  base, plugin = c.method.name, c.method.plugin
  if plugin == "none":
    return c
  set_selected(c.method, infopro=dict(loss_mode="cross_entropy", classifier="2c2f", ixx_1=5.0,
                                      ixy_1=0.5, ixx_2=0.0, ixy_2=0.0))
  if plugin == "hpff":
    if base == "infopro":
      c.method.pff.mode = "code_quadrant_decoders"
    else:
      c.method.pff.mode, c.method.pff.apply_to = "paper_shared_avg", "classifier"
    c.method.pff.patch_loop = patch_loop
  return c
