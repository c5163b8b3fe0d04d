"""Shared defaults of every experiment config. Experiment files call get_config() and override.

The defaults are the InfoPro-family CIFAR recipe (methods.md §10.4/§10.5): SGD Nesterov 0.9,
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
  c.data.augment = True

  c.model = ml_collections.ConfigDict()
  c.model.arch = "cifar_resnet"
  c.model.depth = 32
  c.model.shortcut = "projection"  # projection | zero_pad (DGL ddg_comparison only)

  c.split = ml_collections.ConfigDict()
  c.split.preset = "r32_k16_hpff"  # a name from jax_local.splits.PRESETS

  c.method = ml_collections.ConfigDict()
  c.method.name = "infopro"        # bp | greedy | dgl | infopro | predsim
  c.method.dgl_head = "mlp-sr"     # mlp | mlp-sr | cnn | auglocal | manpp
  c.method.infopro = ml_collections.ConfigDict()
  c.method.infopro.loss_mode = "contrast"     # contrast | cross_entropy
  c.method.infopro.classifier = "1c2f"        # 0c1f | 0c2f | 1c1f | 1c2f | 1c3f | 2c2f
  c.method.infopro.feature_dim = 128
  c.method.infopro.temperature = 0.07
  c.method.infopro.ixx_1 = 5.0
  c.method.infopro.ixy_1 = 0.5
  c.method.infopro.ixx_2 = 0.0
  c.method.infopro.ixy_2 = 0.0
  c.method.predsim = ml_collections.ConfigDict()
  c.method.predsim.beta = 0.99
  c.method.predsim.pool_target = 512
  c.method.predsim.zero_init_pred = True

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"             # sgd | adam
  c.optim.lr = 0.8
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.weight_decay = 1e-4
  c.optim.schedule = "warmup_cosine"   # warmup_cosine | step | cosine | milestones | constant
  c.optim.warmup_epochs = 10
  c.optim.step_epochs = (80, 120)      # schedule=step: x0.1 at these epochs
  c.optim.milestones = (200, 300, 350, 375)  # schedule=milestones: x milestone_factor
  c.optim.milestone_factor = 0.25

  c.executor = "fused"
  c.log_every_steps = 50
  c.eval_every_epochs = 1
  c.checkpoint_every_steps = 0     # 0: at the end of every epoch only
  c.max_checkpoints_to_keep = 3
  return c
