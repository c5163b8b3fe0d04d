"""ImageNet (issue 5, model/data half): backbones, split presets, heads, configs lowered and
compiled from abstract shapes, and the imagenet2012 pipeline on tfds mock data.

Nothing here runs an ImageNet-size net: shapes and parameter counts come from `jax.eval_shape`,
train steps are lowered (and a small one compiled) from ShapeDtypeStructs. By default every
published ImageNet row (third_party/published_rows.csv, configs/imagenet.py) builds its plan;
`imagenet_r34_bp` is lowered and compiled, the main config (configs/imagenet_r101_k4.py) lowered.
JAX_LOCAL_IMAGENET_COMPILE_ALL=1 lowers and compiles every config (about 15 min on 2 cores).
"""
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import imagenet as imagenet_configs
from jax_local import (config_validation, engine, experiment, optim, part_optimizer, published,
                       split_presets, splits)
from jax_local.data import imagenet as inet
from jax_local.heads import imagenet as H
from jax_local.methods import infopro
from jax_local.models import build_backbone
from jax_local.train_state import init_state

IMAGE = (224, 224, 3)

# ---------------------------------------------------------------------------------- backbones
# (arch, depth, extra model fields, torchvision parameter count, stage output widths, blocks)
ARCH_CASES = [
    ("imagenet_resnet", 34, {}, 21_797_672, (64, 128, 256, 512), 18),
    ("imagenet_resnet", 101, {}, 44_549_160, (256, 512, 1024, 2048), 35),
    ("imagenet_resnet", 152, {}, 60_192_808, (256, 512, 1024, 2048), 52),
    ("imagenet_resnext", 101, {"groups": 32, "width_per_group": 8}, 88_791_336,
     (256, 512, 1024, 2048), 35),
    ("vgg", 13, {}, 133_053_736, None, 11),
]


def _model(arch, depth, **extra):
  return ml_collections.ConfigDict(dict(arch=arch, depth=depth, shortcut="projection", **extra))


def _abstract_init(backbone, batch=1):
  """(param count, {block: output shape}) from an abstract init at 224 px."""
  shapes = {}

  def init():
    params, _, out = backbone.init(jax.random.PRNGKey(0), jnp.zeros((batch, *IMAGE)))
    shapes.update(out)
    return params

  params = jax.eval_shape(init)
  return sum(p.size for p in jax.tree.leaves(params)), shapes


@pytest.mark.parametrize("arch,depth,extra,n_params,widths,n_blocks", ARCH_CASES,
                         ids=[f"{a}{d}" for a, d, *_ in ARCH_CASES])
def test_backbone_shapes_and_parameter_counts(arch, depth, extra, n_params, widths, n_blocks):
  backbone = build_backbone(_model(arch, depth, **extra), 1000)
  count, shapes = _abstract_init(backbone)
  assert count == n_params  # torchvision's numbers, exactly
  assert len(backbone.blocks) == n_blocks and backbone.block_names[-1] == "fc"
  assert shapes["fc"] == (1, 1000)
  if arch == "vgg":
    sizes = [224, 224, 112, 112, 56, 56, 28, 28, 14, 14]
    chans = [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    assert [shapes[f"conv{i}"] for i in range(10)] == [(1, s, s, c) for s, c in zip(sizes, chans)]
    return
  assert shapes["stem"] == (1, 56, 56, 64)
  for s, (size, width) in enumerate(zip((56, 28, 14, 7), widths), start=1):
    last = max(int(n[3:]) for n in backbone.block_names if n.startswith(f"s{s}b"))
    assert shapes[f"s{s}b0"] == shapes[f"s{s}b{last}"] == (1, size, size, width)
    assert backbone.module(f"s{s}b0").features == width


def test_zero_init_residual_zeroes_the_last_bn_of_each_block():
  for arch, depth, last_bn in (("imagenet_resnet", 34, "BatchNorm_1"),
                               ("imagenet_resnet", 50, "BatchNorm_2")):
    for zero in (False, True):
      bb = build_backbone(_model(arch, depth, zero_init_residual=zero), 10)
      block = bb.module("s2b1")
      x = jnp.zeros((1, 4, 4, block.features))
      params = jax.jit(lambda k: block.init(k, x, train=True))(jax.random.PRNGKey(0))["params"]
      assert float(jnp.abs(params[last_bn]["scale"]).sum() == 0) == float(zero)
      assert float(params["BatchNorm_0"]["scale"].min()) == 1.0


# ---------------------------------------------------------------------------------- splits
PUBLISHED = {  # docs/methods.md §3.3: preset -> (modules L, paper K)
    "r101_k2_infopro": (2, 2), "r101_k2_man": (2, 2), "r152_k2_infopro": (2, 2),
    "r152_k2_man": (2, 2), "resnext101_k2_infopro": (2, 2), "resnext101_k2_man": (2, 2),
    "r101_k4_hpff": (4, 4), "r152_k4_hpff": (4, 4), "resnext101_k4_hpff": (4, 4),
    "r101_k8_hpff": (8, 8), "r152_k8_hpff": (8, 8), "resnext101_k8_hpff": (8, 8),
    "r34_k4_hpff": (4, 4), "r34_k17_mlaan": (16, 17), "r101_k34_mlaan": (33, 34),
    "r152_k51_mlaan": (50, 51), "r34_k17_auglocal": (17, 17), "r101_k34_auglocal": (34, 34),
    "r152_k2_dgl": (2, 2), "vgg13_k10": (10, 10), "vgg13_k4": (4, 4),
}


def test_published_split_presets_module_counts():
  assert {row.name for row in split_presets.IMAGENET} == set(PUBLISHED)
  for name, (L, k) in PUBLISHED.items():
    s = splits.PRESETS[name]
    assert (s.num_modules, s.paper_k) == (L, k), name
  P = splits.PRESETS
  assert P["r101_k4_hpff"].residual_blocks_per_module == (8, 9, 8, 8)
  assert P["r152_k4_hpff"].residual_blocks_per_module == (12, 9, 8, 21)
  assert P["r34_k4_hpff"].module_labels() == ("stem..2.0", "2.1..3.0", "3.1..3.5", "4.0..4.2+fc")
  assert P["r101_k2_infopro"].module_labels() == ("stem..2.0", "2.1..4.2+fc")
  assert P["r152_k2_infopro"].module_labels() == ("stem..2.5", "2.6..4.2+fc")
  assert P["resnext101_k2_infopro"].module_labels()[0] == "stem..2.2"
  assert P["r152_k2_dgl"].module_ranges[0] == (0, 25)  # first ⌈51/2⌉ = 26 elements
  assert P["r34_k17_mlaan"].module_labels()[:2] == ("stem..1.0", "1.1")
  assert P["r34_k17_auglocal"].module_labels()[0] == "stem"
  assert P["r34_k17_auglocal"].module_labels()[-1] == "4.2+fc"
  assert P["vgg13_k4"].residual_blocks_per_module == (3, 3, 3, 1)
  assert P["vgg13_k10"].module_labels()[-1] == "conv9+fc"


def test_get_split_dispatches_by_arch():
  s = splits.get_split("r101_k4_hpff", 101, "imagenet_resnext")
  assert s is splits.PRESETS["r101_k4_hpff"]
  assert splits.get_split("uniform_k1", 152, "imagenet_resnet").num_modules == 1
  assert splits.get_split("blocks", 34, "imagenet_resnet").num_modules == 16
  assert splits.get_split("blocks_stem", 34, "imagenet_resnet").num_modules == 17
  assert splits.get_split("blocks", 13, "vgg").num_modules == 10
  assert splits.get_split("r32_k16_hpff", 32).num_modules == 15  # CIFAR unchanged
  with pytest.raises(ValueError, match="ResNet-152"):
    splits.get_split("r152_k4_hpff", 101, "imagenet_resnet")
  with pytest.raises(ValueError, match="is for ResNet-32"):
    splits.get_split("r32_k16_hpff", 34, "imagenet_resnet")
  with pytest.raises(ValueError, match="is for ResNet-34"):  # same block names, other blocks
    splits.get_split("r34_k4_hpff", 50, "imagenet_resnet")


# ---------------------------------------------------------------------------------- heads
def _param_shapes(module, *args):
  variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args))
  return jax.tree.map(lambda p: p.shape, variables["params"]), variables.get("batch_stats", {})


@pytest.mark.parametrize("variant,size,channels,widths", [
    ("infopro", 28, 512, (128, 32, 12, 3)),
    ("hpff", 56, 256, (128, 16, 3)),
    ("hpff", 28, 512, (128, 32, 16, 3)),
    ("hpff", 14, 1024, (128, 64, 32, 16, 3)),
    ("hpff", 7, 2048, (128, 64, 32, 12, 6, 3)),  # reachable (Q9 fix)
])
def test_imagenet_decoders(variant, size, channels, widths):
  dec = H.ImageNetDecoder(variant)
  h = jnp.zeros((1, size, size, channels))
  out = jax.eval_shape(lambda: dec.init_with_output(jax.random.PRNGKey(0), h, (224, 224))[0])
  assert out.shape == (1, 224, 224, 3)
  shapes, _ = _param_shapes(dec, h, (224, 224))
  convs = [shapes[f"Conv_{i}"]["Conv_0"] for i in range(len(widths))]
  assert [c["kernel"][-1] for c in convs] == list(widths)
  assert all("bias" in c for c in convs)


@pytest.mark.parametrize("channels,widths", [
    (128, (128, 256, 512, 2048)), (512, (128, 256, 512, 2048)),
    (1024, (256, 256, 512, 2048)), (2048, (512, 512, 1024, 2048))])
def test_imagenet_classifier_widths_and_bn_sizes(channels, widths):
  shapes, stats = _param_shapes(H.ImageNetClassifier(1000), jnp.zeros((1, 14, 14, channels)))
  assert [shapes[f"Conv_{i}"]["Conv_0"]["kernel"][-1] for i in range(4)] == list(widths)
  assert [stats[f"BatchNorm_{i}"]["mean"].shape[0] for i in range(4)] == list(widths)  # Q9 fix
  assert shapes["Dense_0"]["Dense_0"]["kernel"] == (2048, 1000)


def test_quadrant_bce_is_four_times_the_mean_bce_and_heads_run():
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  logits = jax.random.normal(k1, (2, 8, 8, 3))
  target = jax.random.uniform(k2, (2, 8, 8, 3))
  from jax_local import losses
  quad, mean = jax.jit(lambda a, b: (H.quadrant_bce(a, b), losses.bce_with_logits(a, b)))(
      logits, target)
  np.testing.assert_allclose(quad, 4 * mean, rtol=1e-5)
  batch = {"image01": jax.random.uniform(k2, (2, 32, 32, 3)), "label": jnp.array([1, 3])}
  h = jax.random.normal(k1, (2, 4, 4, 16))
  head = H.ImageNetInfoProHead(5.0, 0.75, num_classes=10, decoder_variant="infopro")
  (loss, metrics), _ = jax.eval_shape(
      lambda: head.init_with_output(jax.random.PRNGKey(1), h, batch))
  assert loss.shape == () and set(metrics) == {"loss", "bce", "ce", "accuracy"}
  for c, convs in ((64, 2), (256, 0)):
    shapes, _ = _param_shapes(H.MlaanIAN(10), jnp.zeros((2, 4, 4, c)), batch)
    assert sum(k.startswith("Conv") for k in shapes) == convs


def test_infopro_head_family_dispatch():
  ip = ml_collections.ConfigDict(dict(classifier="1c2f", loss_mode="cross_entropy",
                                      feature_dim=128, temperature=0.07))
  assert type(infopro.infopro_head(ip, 10, 1.0, 1.0)).__name__ == "InfoProHead"
  ip.head_family = "imagenet_hpff"
  head = infopro.infopro_head(ip, 10, 5.0, 0.75)
  assert (head.decoder_variant, head.quadrant_bce) == ("hpff", True)
  ip.loss_mode = "contrast"
  with pytest.raises(ValueError, match="cross_entropy"):
    infopro.infopro_head(ip, 10, 5.0, 0.75)
  ip.head_family = "imagenet"
  with pytest.raises(ValueError, match="head_family"):
    infopro.head_family(ip)


# ---------------------------------------------------------------------------------- configs
CONFIGS = [r.name for r in published.rows() if r.dataset == "imagenet2012"]
MODULES = {  # published row -> modules of its split (BP: 1)
    "imagenet_r101_bp": 1, "imagenet_r152_bp": 1, "imagenet_resnext101_bp": 1,
    "imagenet_vgg13_bp": 1, "imagenet_r34_bp": 1,
    "imagenet_r101_k2_infopro": 2, "imagenet_r152_k2_infopro": 2,
    "imagenet_resnext101_k2_infopro": 2, "imagenet_r152_k2_infopro_man": 2,
    "imagenet_r152_k2_dgl": 2,
    "imagenet_r101_k4_infopro_hpff": 4, "imagenet_r101_k4_infopro": 4,
    "imagenet_r152_k4_infopro_hpff": 4, "imagenet_r152_k4_infopro": 4,
    "imagenet_resnext101_k4_infopro_hpff": 4, "imagenet_resnext101_k4_infopro": 4,
    "imagenet_r101_k4_infopro_man": 4, "imagenet_r152_k4_infopro_man": 4,
    "imagenet_vgg13_k10_dgl": 10, "imagenet_vgg13_k10_dgl_hpff": 10, "imagenet_vgg13_k4_dgl": 4,
    "imagenet_r34_k17_greedy_mlaan": 16, "imagenet_r101_k34_greedy_mlaan": 33,
    "imagenet_r152_k51_greedy_mlaan": 50, "imagenet_r34_k17_auglocal": 17,
}
MAIN = "imagenet_r101_k4_infopro_hpff"   # configs/imagenet_r101_k4.py
COMPILE = {"imagenet_r34_bp"}
LOWER = {MAIN}
ALL = os.environ.get("JAX_LOCAL_IMAGENET_COMPILE_ALL") == "1"


def _build(name):
  config = imagenet_configs.get_config(name)
  config_validation.validate_config(config)
  split = experiment.split_of(config)
  backbone = build_backbone(config.model, config.data.num_classes)
  return config, experiment.build_plan(config.method, backbone, split, config.data.num_classes,
                                       (inet.MEAN, inet.STD))


def test_config_list_is_complete():
  assert set(CONFIGS) == set(MODULES)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_with_published_module_count(name):
  config, plan = _build(name)
  assert plan.num_modules == MODULES[name]
  assert config.data.name == "imagenet2012" and config.data.num_classes == 1000
  assert config.optim.name == "sgd" and config.optim.weight_decay == 1e-4
  if "_dgl" in name and "vgg13_k10" not in name:  # DGL's own recipe (§10.7)
    assert (config.num_epochs, config.optim.schedule) == (50, "milestones")
  else:
    assert config.optim.schedule == "cosine" and config.optim.nesterov
  if config.method.name == "infopro" and config.method.plugin == "none":
    assert all(isinstance(plan.heads[t.head], H.ImageNetInfoProHead)
               for t in plan.terms if t.head != "final")


def test_main_config_recipe():
  from configs import imagenet_r101_k4
  assert imagenet_r101_k4.get_config().to_dict() == _build(MAIN)[0].to_dict()
  config, _ = _build(MAIN)
  assert (config.num_epochs, config.data.batch_size, config.optim.lr) == (90, 128, 0.05)
  assert config.optim.schedule == "cosine" and config.optim.nesterov
  assert (config.method.name, config.method.plugin) == ("infopro", "hpff")


def test_plugin_configs_use_imagenet_heads():
  _, plan = _build(MAIN)  # HPFF ImageNet: cascades only, hpff heads (§7.3)
  assert [t.name for t in plan.terms] == ["cas1", "cas2", "final_y"]
  for t in plan.terms[:2]:
    head = plan.heads[t.head]
    assert isinstance(head, H.ImageNetInfoProHead) and head.quadrant_bce
    assert (t.weight, head.lambda_rec, head.lambda_cls) == (1.0, 5.0, 0.75)
  _, plan = _build("imagenet_r152_k2_infopro_man")
  assert isinstance(plan.heads["m0"].inner, H.ImageNetInfoProHead)


def _lower(name, batch=2):
  config, plan = _build(name)
  tx = part_optimizer.PartOptimizer(optim.make_optimizer(config.optim, config.num_epochs, 100),
                                    plan.ema_pairs)
  state = jax.eval_shape(lambda: init_state(plan, tx, jax.random.PRNGKey(0), IMAGE))
  step = engine.make_train_step(config.executor, plan, tx)
  abstract = {"image": jax.ShapeDtypeStruct((batch, *IMAGE), jnp.float32),
              "label": jax.ShapeDtypeStruct((batch,), jnp.int32)}
  return step.lower(state, abstract)


@pytest.mark.parametrize("name", CONFIGS if ALL else sorted(COMPILE | LOWER))
def test_config_train_step_lowers_and_compiles(name):
  """By default one net compiles and the main config lowers; the env switch does all of them."""
  # the fused executor lowers one program, the sequential one each distinct program
  for program in _lower(name):
    assert "func.func public @main" in program.as_text()
    if ALL or name in COMPILE:
      assert program.compile() is not None


# ---------------------------------------------------------------------------------- data
def _data_config(**kw):
  from configs import common
  c = common.get_config().data
  c.name, c.num_classes, c.tfds_data_dir = "imagenet2012", 1000, ""
  c.update(kw)
  return c


def _dataset(seed, **kw):
  from jax_local.data import input_pipeline
  return input_pipeline.build_dataset(_data_config(**kw), seed=seed)


@pytest.fixture(scope="module")
def mock():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=10):
    yield


def test_shards_cover_every_example():
  for n in (10, 50_000, 1_281_167):
    for p in (1, 2, 3, 8):
      ev = [inet.eval_shard(n, i, p) for i in range(p)]
      assert ev[0][0] == 0 and ev[-1][1] == n and all(a[1] == b[0] for a, b in zip(ev, ev[1:]))
      tr = [inet.train_shard(n, i, p) for i in range(p)]
      assert len({b - a for a, b in tr}) == 1 and tr[-1][1] > n - p


def test_missing_data_explains_manual_preparation(tmp_path):
  from jax_local.data import input_pipeline
  with pytest.raises(FileNotFoundError, match="ILSVRC2012_img_train.tar"):
    input_pipeline.build_dataset(_data_config(tfds_data_dir=str(tmp_path)), seed=0)


def test_crop_window_follows_random_resized_crop():
  import tensorflow as tf
  for hw in ((300, 500), (64, 48), (10, 400)):
    for s in range(6):
      y, x, h, w = inet._crop_window(tf.constant(hw), tf.constant([s, 7], tf.int64)).numpy()
      assert 0 <= y and 0 <= x and 0 < h and 0 < w and y + h <= hw[0] and x + w <= hw[1]
      if hw == (300, 500):  # a try fits: area in [0.08, 1], ratio in [3/4, 4/3] up to rounding
        assert 0.07 <= h * w / 150_000 <= 1 and 0.7 <= w / h <= 1.4
      if hw == (10, 400):  # every try fails: centre crop at ratio 4/3
        assert (h, w, y) == (10, 13, 0)


def test_pipeline_batches_on_mock_data(mock):
  ds = _dataset(3)
  assert (ds.num_train, ds.num_test, ds.num_classes, ds.image_shape) == (10, 10, 1000, IMAGE)
  assert ds.steps_per_epoch(4, True) == 2 and ds.steps_per_epoch(4, False) == 3
  batches = list(ds.train_batches(0, 0, 4, drop_remainder=True))
  assert len(batches) == 2
  for b in batches:
    assert b["image"].shape == (4, *IMAGE) and b["image"].dtype == np.float32
    assert b["label"].dtype == np.int32 and ((0 <= b["label"]) & (b["label"] < 1000)).all()
    x01 = b["image"] * np.array(inet.STD, np.float32) + np.array(inet.MEAN, np.float32)
    assert x01.min() >= -1e-4 and x01.max() <= 1 + 1e-4 and x01.std() > 0.05
  # deterministic for a seed, resumable, and different across epochs
  again = list(_dataset(3).train_batches(0, 1, 4, drop_remainder=True))
  np.testing.assert_array_equal(again[0]["image"], batches[1]["image"])
  other = next(ds.train_batches(1, 0, 4, drop_remainder=True))
  assert not np.array_equal(other["image"], batches[0]["image"])
  # augmentation changes the image: same order without it, different pixels
  plain = next(_dataset(3, augment=False).train_batches(0, 0, 4, drop_remainder=True))
  np.testing.assert_array_equal(plain["label"], batches[0]["label"])
  assert np.abs(plain["image"] - batches[0]["image"]).mean() > 0.1


def test_eval_batches_cover_each_example_once(mock):
  import tensorflow_datasets as tfds
  ds = _dataset(0)
  labels = [int(e["label"]) for e in tfds.builder("imagenet2012").as_dataset(split="validation")]
  batches = list(ds.eval_batches(4))
  assert len(batches) == ds.eval_steps(4) == 3
  mask = np.concatenate([b["mask"] for b in batches])
  assert mask.tolist() == [1.0] * 10 + [0.0] * 2
  got = np.concatenate([b["label"] for b in batches])[mask > 0]
  assert got.tolist() == labels
  assert all(b["image"].shape == (4, *IMAGE) for b in batches)
  assert np.abs(batches[-1]["image"][2:]).max() == 0
  np.testing.assert_array_equal(next(ds.eval_batches(4))["image"], batches[0]["image"])
  # two processes: the same number of padded batches each, masks summing to every example
  shards = [inet.ImageNetDataset(ds.builder, 10, 10, 0, process_index=i, process_count=2)
            for i in range(2)]
  per = [list(s.eval_batches(4)) for s in shards]
  assert len(per[0]) == len(per[1]) == 3
  assert sum(b["mask"].sum() for p in per for b in p) == 10


def test_device_prefetch_keeps_order():
  batches = [{"x": np.full((2,), i)} for i in range(5)]
  out = list(inet.device_prefetch(iter(batches), size=2))
  assert [int(b["x"][0]) for b in out] == list(range(5))
  assert isinstance(out[0]["x"], jax.Array)
