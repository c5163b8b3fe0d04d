"""Small builders shared by tests: tiny configs and plans that compile fast on CPU."""
import jax
import jax.numpy as jnp

from configs import common
from jax_local import methods, optim, part_optimizer, splits
from jax_local.models import build_backbone
from jax_local.train_state import init_state

IMAGE_SHAPE = (16, 16, 3)


def tiny_config(method="dgl", depth=8, preset="uniform_k3"):
  c = common.get_config()
  c.model.depth = depth
  c.split.preset = preset
  c.method.name = method
  c.method.dgl_head = "cnn"
  c.method.infopro.loss_mode = "cross_entropy"
  c.method.infopro.ixx_1, c.method.infopro.ixy_1 = 1.0, 1.0
  c.method.infopro.ixx_2, c.method.infopro.ixy_2 = 0.5, 1.0
  c.method.predsim.pool_target = 64
  c.data.num_classes = 4
  c.num_epochs = 2
  return c


def tiny_plan_and_state(config, image_shape=IMAGE_SHAPE, seed=0):
  backbone = build_backbone(config.model, config.data.num_classes)
  split = splits.get_split(config.split.preset, config.model.depth)
  plan = methods.build_plan(config.method, backbone, split, config.data.num_classes)
  tx = part_optimizer.PartOptimizer(optim.make_optimizer(config.optim, config.num_epochs, 10),
                                    plan.ema_pairs)
  state = init_state(plan, tx, jax.random.PRNGKey(seed), image_shape)
  return plan, tx, state


def random_batch(n=8, image_shape=IMAGE_SHAPE, num_classes=4, seed=1):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  image = jax.random.normal(k1, (n, *image_shape))
  label = jax.random.randint(k2, (n,), 0, num_classes)
  return {"image": image, "label": label.astype(jnp.int32),
          "image01": jax.nn.sigmoid(image)}
