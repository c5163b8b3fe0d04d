"""Shared defaults of every experiment config, and the helpers the config files share.

Experiment files (configs/cifar.py, imagenet.py, fashion_mnist.py, ...) call get_config() and
override.

The defaults are the InfoPro-family CIFAR recipe (docs/methods.md §10.4/§10.5): SGD Nesterov 0.9,
weight decay 1e-4 on all parameters, per-epoch warm-up blend into cosine, batch 1024, lr0 0.8.
"""
import ml_collections


def get_config():
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

  c.method = ml_collections.ConfigDict()
  c.method.name = "infopro"        # bp | greedy | dgl | infopro | predsim | auglocal
  c.method.dgl_head = "mlp-sr"     # mlp | mlp-sr | cnn | auglocal | manpp
  # Q23: a module's BN running statistics get one update per term whose window holds it (the
  # references run it that often per step: up to 3 under HiLo, 4 under MLM); False: one update
  c.method.replicate_bn_calls = True
  c.method.infopro = ml_collections.ConfigDict()
  c.method.infopro.loss_mode = "contrast"     # contrast | cross_entropy
  c.method.infopro.classifier = "1c2f"        # 0c1f | 0c2f | 1c1f | 1c2f | 1c3f | 2c2f
  c.method.infopro.feature_dim = 128
  c.method.infopro.temperature = 0.07
  c.method.infopro.ixx_1 = 5.0
  c.method.infopro.ixy_1 = 0.5
  c.method.infopro.ixx_2 = 0.0
  c.method.infopro.ixy_2 = 0.0
  c.method.infopro.decoder_bce = "exact"      # exact | torch (the references' BCELoss(sigmoid))
  c.method.predsim = ml_collections.ConfigDict()
  c.method.predsim.beta = 0.99
  c.method.predsim.pool_target = 512
  c.method.predsim.zero_init_pred = True
  # AugLocal (docs/methods.md §6.3): the README settings are d=2 (ResNet-32), d=3 (ResNet-110).
  c.method.auglocal = ml_collections.ConfigDict()
  c.method.auglocal.aux_depth = 2
  c.method.auglocal.pyramid = True
  c.method.auglocal.pyramid_coeff = 0.5
  c.method.auglocal.subtract_depth_from_k = True  # quirk Q3 (CIFAR code): K_eff = K - d

  # Plugins rewrite the base plan (jax_local/plugins; quirk options listed in README.md). They live under config.method
  # because the trainer hands config.method to methods.build_plan.
  c.method.plugin = "none"         # none | hpff | mlaan | man
  c.method.hilo = ml_collections.ConfigDict()      # HPFF's HiLo (§7.1)
  c.method.hilo.k = 2
  c.method.hilo.w_ind = 0.001
  c.method.hilo.w_cas = 0.999
  c.method.hilo.lambda_schedule = "hpff_kcli"      # quirk Q5; see plugins/schedules.py
  c.method.hilo.final_x_loss = "weighted"          # weighted | dropped
  c.method.pff = ml_collections.ConfigDict()       # Patch Feature Fusion (§7.2, Q12)
  c.method.pff.mode = "code_quadrant_decoders"     # | paper_shared_avg | off
  c.method.pff.grid = (2, 2)
  c.method.pff.apply_to = "classifier"             # paper_shared_avg: decoder | classifier | both
  c.method.pff.patch_loop = "scan"                 # paper_shared_avg: vmap | scan | unrolled
  c.method.mlm = ml_collections.ConfigDict()       # MLAAN's multilaminar cascades (§8.1)
  c.method.mlm.k = 3                               # paper; the CIFAR code uses 2
  c.method.mlm.w_ind = 0.001
  c.method.mlm.w_cas = 0.999
  c.method.mlm.lambda_schedule = "man_stage"       # quirk Q6 (MLAAN-InfoPro code)
  c.method.mlm.final_x_loss = "weighted"           # quirk Q8: dropped = CIFAR code
  c.method.lam = ml_collections.ConfigDict()       # Leap Augmented Modules (§8.2)
  c.method.lam.ema_decay = 0.995
  c.method.lam.ema_update = "all"                  # quirk Q7: last_only = CIFAR code
  c.method.lam.ema_at = "first"                    # | all_layers
  c.method.lam.copy_init = "copy_of_target"        # | independent (ImageNet code, Q14)
  c.method.lam.leap_lists = "auto"                 # auto | published | generic
  c.method.man = ml_collections.ConfigDict()       # MAN / MAN++ (§9)
  c.method.man.variant = "man"                     # man | manpp
  c.method.man.ema_decay = 0.995                   # quirk Q18: the README value
  c.method.man.copy_init = "independent"           # quirk Q14 (MAN code) | copy_of_target
  c.method.man.bias_form = "parallel_block"        # | param_offset
  c.method.man.lambda_schedule = "man_stage"       # quirk Q6
  c.method.man.stem_module = False                 # MAN++ only: the stem as its own module

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

  c.executor = "fused"
  c.log_every_steps = 50
  c.eval_every_epochs = 1
  c.eval = ml_collections.ConfigDict()
  c.eval.bn_recompute_batches = 0  # >0: also evaluate with BN statistics re-estimated over this
  #                                  many augmented training batches (README "Two test errors")
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


def set_plugin(c, base: str, plugin: str, patch_loop: str = "scan"):
  """Sets config.method for base × plugin (plugin may be "none"), the CIFAR-shape recipes:
  InfoPro inside a plug-in uses the plug-ins' README flags (CE, 2c2f, λ (5, 0.5, 0, 0));
  HPFF's PFF is code_quadrant_decoders with InfoPro and paper_shared_avg on the classifier
  for the other bases (docs/methods.md §7.4), its patch nets run by `patch_loop`."""
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
