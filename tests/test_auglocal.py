"""AugLocal aux-net rules vs the derived table of docs/methods.md §6.3 (picks, strides, depths)."""
import pytest

from jax_local.methods import auglocal

R32 = [16] * 6 + [32] * 5 + [64] * 5
R110 = [16] * 19 + [32] * 18 + [64] * 18
R34 = [64] * 4 + [128] * 4 + [256] * 6 + [512] * 3   # ImageNet: stem, 16 blocks

# (name, net_dim, d, pyramid, subtract, K_eff, depths (run-length), {layers: (picks, strides)})
ROWS = [
    ("R32 K16 d=1", R32, 1, True, True, 15, [(1, 14)],
     {range(0, 6): ([15], [2]), range(6, 11): ([15], [2]), range(11, 14): ([15], [1])}),
    ("R32 K16 d=2", R32, 2, True, True, 14, [(2, 13)],
     {range(0, 3): ([8, 15], [2, 2]), (3,): ([9, 15], [2, 2]), (4, 5): ([10, 15], [2, 2]),
      (6,): ([10, 15], [1, 2]), (7,): ([11, 15], [2, 1]), range(8, 11): ([12, 15], [2, 1]),
      (11,): ([13, 15], [1, 1]), (12,): ([14, 15], [1, 1])}),
    ("R32 K16 d=3", R32, 3, True, True, 13, [(3, 6), (2, 6)],
     {(0,): ([5, 10, 15], [1, 2, 2]), (1,): ([6, 10, 15], [2, 1, 2]),
      (2,): ([6, 11, 15], [2, 2, 1]), (3,): ([7, 11, 15], [2, 2, 1]),
      (4,): ([8, 11, 15], [2, 2, 1]), (5,): ([8, 12, 15], [2, 2, 1]),
      (6,): ([10, 15], [1, 2]), (7,): ([11, 15], [2, 1]), (11,): ([13, 15], [1, 1])}),
    ("R32 K16 d=5", R32, 5, True, True, 11, [(5, 3), (4, 4), (3, 3)],
     {(0,): ([3, 6, 9, 12, 15], [1, 2, 1, 2, 1]), (3,): ([6, 9, 12, 15], [2, 1, 2, 1]),
      (7,): ([10, 12, 15], [1, 2, 1]), (9,): ([11, 13, 15], [2, 1, 1])}),
    ("R110 K55 d=3", R110, 3, True, True, 52, [(3, 25), (2, 26)],
     {(0,): ([18, 36, 54], [1, 2, 2]), (1,): ([19, 36, 54], [2, 1, 2]),
      (2,): ([19, 37, 54], [2, 2, 1]), (6,): ([22, 38, 54], [2, 2, 1]),
      (18,): ([30, 42, 54], [2, 2, 1]), (19,): ([31, 42, 54], [1, 2, 1]),
      (24,): ([34, 44, 54], None), range(25, 28): ([40, 54], [2, 1]), (36,): ([45, 54], [2, 1]),
      range(37, 40): ([46, 54], [1, 1]), (50,): ([52, 54], None)}),
    ("R110 K55 d=5", R110, 5, True, True, 50, [(5, 12), (4, 25), (3, 12)],
     {(0,): ([11, 22, 32, 43, 54], [1, 2, 1, 2, 1]), (12,): ([22, 33, 44, 54], [2, 1, 2, 1]),
      (37,): ([43, 48, 54], [1, 1, 1]), (48,): ([50, 52, 54], None)}),
    ("ImageNet R34 K17 d=4", R34, 4, False, False, 17, [(4, 16)],
     {(0,): ([4, 8, 12, 16], [2, 2, 1, 2]), (4,): ([7, 10, 13, 16], [1, 2, 1, 2]),
      (8,): ([10, 12, 14, 16], [1, 1, 2, 1]), (13,): ([14, 15, 16], [2, 1, 1]),
      (14,): ([15, 16], None), (15,): ([16], None)}),
]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_derived_table(row):
  _, net_dim, d, pyramid, subtract, k_eff, depths, plans = row
  got_k, nets = auglocal.aux_nets(net_dim, d, pyramid, 0.5, subtract)
  assert got_k == k_eff
  assert [n.depth for n in nets] == [v for v, count in depths for _ in range(count)]
  for layers, (picks, strides) in plans.items():
    for l in layers:
      assert list(nets[l].picks) == picks, (l, nets[l])
      if strides is not None:
        assert list(nets[l].strides) == strides, (l, nets[l])
  assert all(n.picks[-1] == len(net_dim) - 1 for n in nets)


def test_half_to_even_and_no_pyramid():
  assert auglocal.select_layers(0, 2, 16) == (8, 15)          # round(7.5) = 8
  assert auglocal.select_layers(27, 2, 55) == (40, 54)        # round(40.5) = 40
  assert auglocal.depth_schedule(3, 13, False, 0.5) == [3] * 12
  assert auglocal.select_layers(13, 5, 16) == (14, 15)        # depth >= n-1-l: all later layers


def test_cifar_r32_plan():
  """configs/cifar.py:cifar10,32,16,auglocal: 13 aux nets, 14 modules, the last = 3.2..3.4 + fc."""
  from configs import cifar
  from jax_local import experiment, splits
  from jax_local.models import build_backbone
  c = cifar.get_config("cifar10,32,16,auglocal")
  plan = experiment.build_plan(c.method, build_backbone(c.model, 10),
                               splits.get_split(c.split.preset, 32), 10)
  assert plan.num_modules == 14
  assert plan.modules[0] == ("stem",) and plan.modules[-1] == ("s3b2", "s3b3", "s3b4", "fc")
  assert len(plan.terms) == 14 and all(t.first == t.last for t in plan.terms)
  assert plan.heads["m0"].blocks == ((32, 2), (64, 2)) and not plan.heads["m0"].bn_head
  assert plan.heads["m12"].blocks == ((64, 1), (64, 1))
