"""The published-rows table (third_party/published_rows.csv): every row is well-formed, builds
the config of its name, and that config's plan has the row's published module count. Plans are
built without initialising or compiling anything."""
import importlib.util
import os

import pytest

from configs import cifar
from jax_local import config_validation, experiment, plugins, published
from jax_local.models import build_backbone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = published.rows()


def _load(path):
  spec = importlib.util.spec_from_file_location("published_config", os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_table_is_well_formed():
  names = [r.name for r in ROWS]
  assert len(names) == len(set(names)) and len(ROWS) >= 100
  for r in ROWS:
    assert r.paper in published.PAPERS and r.tag in published.TAGS and r.table, r.name
    assert (r.top1_error is None) == (r.tag == "-"), r.name   # a number carries its source
    assert r.name.startswith(f"{r.dataset.replace('2012', '')}_{r.net}_"), r.name
    suffix = r.method if r.plugin == "none" else f"{r.method}_{r.plugin}"
    assert r.name.endswith(suffix), r.name
    assert (r.method == "bp") == (r.modules == 1 == r.k), r.name
    assert published.match(r.dataset, *_arch_depth(r), r.split, r.method, r.plugin) == r
    if r.dataset != "imagenet2012":   # a CIFAR row's name is its configs/cifar.py cell name
      assert cifar.name(*cifar.parse(r.name)) == r.name
      assert cifar.parse(r.name) == (r.dataset, r.depth, r.k, r.method, r.plugin)


def _arch_depth(r):
  arch = {"resnext": "imagenet_resnext", "vgg": "vgg"}.get(r.net.rstrip("0123456789"),
                                                           "cifar_resnet")
  if arch == "cifar_resnet" and r.dataset == "imagenet2012":
    arch = "imagenet_resnet"
  return arch, r.depth


def test_every_row_builds_its_plan_with_the_published_module_count():
  config_module = _load("configs/published.py")
  for r in ROWS:
    config = config_module.get_config(r.name)
    config_validation.validate_config(config)
    split = experiment.split_of(config)
    assert (config.data.name, config.split.preset) == (r.dataset, r.split), r.name
    assert (config.method.name, plugins.plugin_name(config.method)) == (r.method, r.plugin)
    assert published.net_name(config.model.arch, config.model.depth) == r.net, r.name
    backbone = build_backbone(config.model, config.data.num_classes)
    plan = experiment.build_plan(config.method, backbone, split, config.data.num_classes)
    assert plan.num_modules == r.modules, r.name
    assert split.paper_k == r.k or r.method == "bp", r.name
    assert config.executor == ("fused" if r.method == "bp" else "sequential"), r.name


@pytest.mark.parametrize("path,row", [
    ("configs/imagenet_r101_k4.py", "imagenet_r101_k4_infopro_hpff"),
    ("configs/imagenet.py", "imagenet_r101_k4_infopro_hpff")])
def test_headline_files_give_the_row(path, row):
  expected = _load("configs/published.py").get_config(row).to_dict()
  module = _load(path)
  assert module.get_config().to_dict() == expected
  if path.endswith("imagenet.py"):
    assert module.get_config(row.removeprefix("imagenet_")).to_dict() == expected


def test_unknown_row_names_the_table():
  with pytest.raises(KeyError, match="imagenet_r101_k4_infopro_hpff"):
    published.get("imagenet_r101_k5")


def test_listing_names_every_row():
  text = published.listing()
  assert all(f"\n{r.name} " in text for r in ROWS)
  assert "21.14 / 5.49" in text and "6.36 ± 0.15" in text



def test_launch_lists_the_rows(capsys):
  """`launch.py --list_configs` needs neither --config nor --workdir and prints every row."""
  import launch
  try:
    launch.FLAGS(["launch.py", "--list_configs"])
    launch.main(["launch.py"])
  finally:
    launch.FLAGS.unparse_flags()
  out = capsys.readouterr().out
  assert all(f"\n{r.name} " in out for r in ROWS)
