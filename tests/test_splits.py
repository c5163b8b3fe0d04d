"""Split presets against the docs/methods.md §3.2 table; constructors, generic splits, errors."""
import pytest

from jax_local import split_presets
from jax_local import splits as S

R20, R32, R110 = (S.layout("cifar_resnet", d) for d in (20, 32, 110))

# §3.2 "modules" column, verbatim where written out ("a..b" inclusive; "+fc" implied at the end).
TABLE = {
    "r32_k2": "stem..2.1 / 2.2..3.4",
    "r32_k3": "stem..1.4 / 2.0..2.4 / 3.0..3.4",
    "r32_k4": "stem..1.2 / 1.3..2.1 / 2.2..3.0 / 3.1..3.4",
    "r32_k8": "stem..1.0 / 1.1..1.2 / 1.3..1.4 / 2.0..2.1 / 2.2..2.3 / 2.4..3.0 / 3.1..3.2 / 3.3..3.4",
    "r110_k2": "stem..2.8 / 2.9..3.17",
    "r110_k3": "stem..1.17 / 2.0..2.17 / 3.0..3.17",  # "one stage each"
    "r110_k4": "stem..1.11 / 1.12..2.7 / 2.8..3.3 / 3.4..3.17",
    "r110_k8": "stem..1.4 / 1.5..1.11 / 1.12..2.0 / 2.1..2.7 / 2.8..2.14 / 2.15..3.3 / 3.4..3.10 / "
               "3.11..3.17",
    "r110_k16": "stem..1.1 / 1.2..1.4 / 1.5..1.7 / 1.8..1.10 / 1.11..1.13 / 1.14..1.16 / 1.17..2.1 / "
                "2.2..2.4 / 2.5..2.7 / 2.8..2.11 / 2.12..2.15 / 2.16..3.1 / 3.2..3.5 / 3.6..3.9 / "
                "3.10..3.13 / 3.14..3.17",
    "r110_k32": "stem..1.1 / 1.2 / 1.3..1.4 / 1.5 / 1.6..1.7 / 1.8..1.9 / 1.10..1.11 / 1.12..1.13 / "
                "1.14 / 1.15..1.16 / 1.17 / 2.0..2.1 / 2.2 / 2.3..2.4 / 2.5 / 2.6..2.7 / 2.8..2.9 / "
                "2.10..2.11 / 2.12..2.13 / 2.14 / 2.15..2.16 / 2.17 / 3.0..3.1 / 3.2..3.3 / 3.4 / "
                "3.5..3.6 / 3.7 / 3.8..3.9 / 3.10..3.11 / 3.12..3.13 / 3.14..3.15 / 3.16..3.17",
    "r110b_k2": "stem..1.14 / 1.15..3.17",
    "r110b_k3": "stem..1.9 / 1.10..2.2 / 2.3..3.17",
    "r110b_k3_stl": "stem..1.8 / 1.9..2.1 / 2.2..3.17",
    "r110b_k4": "stem..1.6 / 1.7..1.14 / 1.15..2.8 / 2.9..3.17",
}
TABLE["r32_k8_hpff"] = TABLE["r32_k8"]
TABLE["r110_k32_hpff"] = TABLE["r110_k32"]
# (paper K, L) of the table; r32_k8_hpff / r110_k32_hpff are naming aliases.
KL = {"r32_k2": (2, 2), "r32_k3": (3, 3), "r32_k4": (4, 4), "r32_k8": (8, 8), "r32_k8_hpff": (8, 8),
      "r32_k16_infopro": (16, 16), "r32_k16_auglocal": (16, 16), "r32_k16_hpff": (16, 15),
      "r110_k2": (2, 2), "r110_k3": (3, 3), "r110_k4": (4, 4), "r110_k8": (8, 8), "r110_k16": (16, 16),
      "r110_k32": (32, 32), "r110_k32_hpff": (32, 32), "r110_k55_hpff": (55, 54),
      "r110_k55_auglocal": (55, 55), "r110b_k2": (2, 2), "r110b_k3": (3, 3), "r110b_k3_stl": (3, 3),
      "r110b_k4": (4, 4)}


def _parse(lay, text):
  def idx(label):
    return 0 if label == "stem" else lay.index(*map(int, label.split(".")))
  out = []
  for part in text.split(" / "):
    a, _, b = part.partition("..")
    out.append((idx(a), idx(b or a)))
  return tuple(out)


def test_block_indexing():
  assert R32.index(0, 0) == 0 and R32.index(1, 0) == 1
  assert R32.index(2, 0) == 6 and R32.index(3, 4) == 15
  assert R110.index(3, 17) == 54
  assert [R32.label(i) for i in (0, 1, 5, 6, 15, 16)] == ["stem", "1.0", "1.4", "2.0", "3.4", "fc"]
  assert R32.blocks[15] == R32.block("3.4") == "s3b4" and R32.block("fc") == "fc"
  for bad in ((1, 5), (4, 0), (0, 1)):
    with pytest.raises(ValueError):
      R32.index(*bad)
  with pytest.raises(ValueError, match="model.depth"):
    S.layout("cifar_resnet", 33)


def test_every_preset_listed_and_counts():
  assert {row.name for row in split_presets.CIFAR} == set(KL)
  for name, (k, L) in KL.items():
    s = S.PRESETS[name]
    assert (s.name, s.paper_k, s.num_modules) == (name, k, L), name
    assert s.layout == (R32 if name.startswith("r32") else R110)
    assert s.module_ranges[0][0] == 0 and s.module_ranges[-1][1] == 3 * (s.layout.depth - 2) // 6
    assert f"-> {L} gradient-isolated modules" in s.describe()


@pytest.mark.parametrize("name", sorted(TABLE))
def test_module_contents_match_table(name):
  s = S.PRESETS[name]
  assert s.module_ranges == _parse(s.layout, TABLE[name])


def test_one_block_rows():
  hp, ip, al = S.PRESETS["r32_k16_hpff"], S.PRESETS["r32_k16_infopro"], S.PRESETS["r32_k16_auglocal"]
  assert hp.module_ranges == ((0, 1),) + tuple((i, i) for i in range(2, 16))
  assert ip.module_ranges == tuple((i, i) for i in range(16)) == al.module_ranges
  assert ip.stem_alone and not hp.stem_alone
  assert (ip.convention, al.convention, hp.convention) == ("A", "C", "B")
  h55, a55 = S.PRESETS["r110_k55_hpff"], S.PRESETS["r110_k55_auglocal"]
  assert h55.module_ranges == ((0, 1),) + tuple((i, i) for i in range(2, 55))
  assert a55.module_ranges == tuple((i, i) for i in range(55))
  assert a55.module_labels()[0] == "stem" and a55.module_labels()[-1] == "3.17+fc"


def test_bracketed_block_counts():
  expect = {"r32_k2": (7, 8), "r32_k4": (3, 4, 4, 4), "r110_k2": (27, 27),
            "r110_k4": (12, 14, 14, 14), "r110_k8": (5,) + (7,) * 7}
  for name, counts in expect.items():
    assert S.PRESETS[name].residual_blocks_per_module == counts, name


def test_describe():
  d = S.PRESETS["r32_k16_hpff"].describe()
  assert d.startswith("r32_k16_hpff: paper K=16 -> 15 gradient-isolated modules: stem..1.0 | 1.1 | ")
  assert d.endswith(" | 3.3 | 3.4+fc")
  assert "-> 54 gradient-isolated modules" in S.PRESETS["r110_k55_hpff"].describe()
  assert S.get_split("uniform_k1", 20).describe() == (
      "uniform_k1: paper K=1 -> 1 gradient-isolated module: stem..3.2+fc")


# B lists of HPFF `network/config.py` for K=2/3/4/8 (ResNet-32) and K=2/3/4/8/16 (ResNet-110):
# A's split points plus the final block.
B_LISTS = {
    (32, "r32_k2"): [[2, 1], [3, 4]], (32, "r32_k3"): [[1, 4], [2, 4], [3, 4]],
    (32, "r32_k4"): [[1, 2], [2, 1], [3, 0], [3, 4]],
    (32, "r32_k8"): [[1, 0], [1, 2], [1, 4], [2, 1], [2, 3], [3, 0], [3, 2], [3, 4]],
    (110, "r110_k2"): [[2, 8], [3, 17]], (110, "r110_k3"): [[1, 17], [2, 17], [3, 17]],
    (110, "r110_k4"): [[1, 11], [2, 7], [3, 3], [3, 17]],
    (110, "r110_k8"): [[1, 4], [1, 11], [2, 0], [2, 7], [2, 14], [3, 3], [3, 10], [3, 17]],
    (110, "r110_k16"): [[1, 1], [1, 4], [1, 7], [1, 10], [1, 13], [1, 16], [2, 1], [2, 4], [2, 7],
                        [2, 11], [2, 15], [3, 1], [3, 5], [3, 9], [3, 13], [3, 17]],
}


def test_convention_b_equals_a():
  for (depth, name), ends in B_LISTS.items():
    b = S.from_module_ends(S.layout("cifar_resnet", depth), ends, name + "_b", 0)
    assert b.module_ends == S.PRESETS[name].module_ends, name
  assert S.PRESETS["r32_k8_hpff"].module_ends == S.PRESETS["r32_k8"].module_ends


def test_constructors():
  a = S.from_split_points(R20, [[0, 0], [2, 0]], "x", 3)
  assert a.module_ranges == ((0, 0), (1, 4), (5, 9))
  c = S.from_split_points(R20, [[0, 0, 0], [1, 2, 3]], "c", 3, convention="C")
  assert c.module_ranges == ((0, 0), (1, 3), (4, 9))
  with pytest.raises(ValueError, match="layer_id"):
    S.from_split_points(R20, [[0, 0, 0], [1, 2, 2]], "c", 3, convention="C")
  with pytest.raises(ValueError, match="empty last module"):
    S.from_split_points(R20, [[3, 2]], "x", 2)
  with pytest.raises(ValueError, match="stem"):
    S.from_module_ends(R20, [[0, 0], [3, 2]], "x", 2)
  with pytest.raises(ValueError, match="final block"):
    S.from_module_ends(R20, [[1, 2]], "x", 1)
  with pytest.raises(ValueError, match="increasing"):
    S.from_split_points(R20, [[2, 0], [1, 0]], "x", 3)


def test_uniform_rule_and_generic_names():
  same = [("r32_k2", 2, False), ("r32_k4", 4, False), ("r32_k8", 8, False),
          ("r32_k16_infopro", 16, True), ("r32_k16_hpff", 15, False), ("r110_k4", 4, False),
          ("r110_k8", 8, False), ("r110_k16", 16, False), ("r110_k55_hpff", 54, False),
          ("r110_k55_auglocal", 55, True)]
  for name, L, stem in same:
    p = S.PRESETS[name]
    assert S.uniform(p.layout, L, stem).module_ends == p.module_ends, name
  assert S.uniform(R20, 3).module_ranges == ((0, 2), (3, 5), (6, 9))
  assert S.get_split("uniform_k1", 20).module_ranges == ((0, 9),)
  assert S.get_split("uniform_k3_stem", 20).module_ranges == ((0, 0), (1, 4), (5, 9))
  b, bs = S.get_split("blocks", 20), S.get_split("blocks_stem", 20)
  assert b.num_modules == 9 and b.module_ranges[0] == (0, 1) and not b.stem_alone
  assert bs.num_modules == 10 and bs.stem_alone
  assert S.get_split("r32_k4", 32) is S.PRESETS["r32_k4"]


def test_errors():
  with pytest.raises(ValueError, match=r"split\.preset='nope'.*r32_k16_hpff.*uniform_k<L>"):
    S.get_split("nope", 32)
  with pytest.raises(ValueError, match=r"split.preset='r110_k55_hpff' is for ResNet-110 .*model.depth=32"):
    S.get_split("r110_k55_hpff", 32)
  with pytest.raises(ValueError, match="impossible split"):
    S.get_split("uniform_k10", 20)  # 9 residual blocks: at most 9 modules with the stem merged
  with pytest.raises(ValueError, match="impossible split"):
    S.get_split("uniform_k11_stem", 20)
  with pytest.raises(ValueError, match="impossible split"):
    S.get_split("uniform_k0", 20)
  with pytest.raises(ValueError, match="model.depth"):
    S.get_split("blocks", 21)
  assert S.get_split("uniform_k10_stem", 20).num_modules == 10
