"""Small builders shared by tests: tiny configs and plans that compile fast on CPU."""
import jax
import jax.numpy as jnp

from configs import common
from jax_local import experiment, optim, part_optimizer, splits
from jax_local.models import build_backbone
from jax_local.train_state import init_state

IMAGE_SHAPE = (16, 16, 3)


def tiny_config(method="dgl", depth=8, preset="uniform_k3", plugin="none"):
  c = common.get_config(method, plugin)
  c.model.depth = depth
  c.split.preset = preset
  common.set_selected(c.method, dgl_head="cnn", predsim=dict(pool_target=64), infopro=dict(
      loss_mode="cross_entropy", ixx_1=1.0, ixy_1=1.0, ixx_2=0.5, ixy_2=1.0))
  c.data.num_classes = 4
  c.num_epochs = 2
  return c


def tiny_plan_and_state(config, image_shape=IMAGE_SHAPE, seed=0, normalisation=None):
  backbone = build_backbone(config.model, config.data.num_classes)
  split = splits.get_split(config.split.preset, config.model.depth)
  plan = experiment.build_plan(config.method, backbone, split, config.data.num_classes,
                               normalisation)
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
