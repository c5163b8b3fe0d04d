"""The validation split and the best checkpoint; what a resumed run drops from its records."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from jax_local import checkpointing, run_log, tb_events, train
from jax_local.data import input_pipeline
from jax_local.train_state import TrainState


def _state(step):
  return TrainState(step=jnp.int32(step), params={"w": jnp.full((3,), float(step))},
                    batch_stats={}, opt_state={})


def test_the_best_validation_checkpoint_survives_rotation(tmp_path):
  rolling = checkpointing.Checkpointer(str(tmp_path / "checkpoints"), 1)
  best = train.BestCheckpoint(str(tmp_path), [])
  for step, validation_error in ((1, 30.0), (2, 20.0), (3, 25.0), (4, 20.0)):
    rolling.save(_state(step))
    best.offer(_state(step), {"validation_error": validation_error})
  rolling.close()
  best.close()
  assert os.listdir(tmp_path / "checkpoints") == ["4"]
  assert os.listdir(tmp_path / train.BestCheckpoint.DIRECTORY) == ["2"]  # a tie keeps the first
  # a resumed run continues from the best of its history
  again = train.BestCheckpoint(str(tmp_path), [{"validation_error": 20.0}, {"test_error": 1.0}])
  assert not again.offer(_state(5), {"validation_error": 20.0}) and again.best == 20.0
  again.close()


def test_validation_is_carved_deterministically_whatever_the_seed():
  images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1)
  labels = np.arange(50, dtype=np.int32)
  (train_x, train_y), (val_x, val_y) = input_pipeline.carve_validation((images, labels), 10)
  again = input_pipeline.carve_validation((images, labels), 10)
  np.testing.assert_array_equal(again[1][1], val_y)
  assert len(val_y) == 10 and len(train_y) == 40 and not set(val_y) & set(train_y)
  assert list(val_y) == sorted(val_y) and list(train_y) == sorted(train_y)  # order kept
  np.testing.assert_array_equal(val_x[:, 0, 0, 0], val_y)
  ds = input_pipeline.Dataset("fashion_mnist", (train_x, train_y), (images, labels), 50,
                              (0.5,), (0.5,), seed=3, validation=(val_x, val_y))
  batches = list(ds.eval_batches(8, "validation"))
  assert sum(b["mask"].sum() for b in batches) == 10 and len(batches) == 2
  with pytest.raises(ValueError, match="validation_size=50 must be in"):
    input_pipeline.carve_validation((images, labels), 50)


def test_a_resumed_run_drops_the_records_logged_after_its_checkpoint(tmp_path):
  writer = run_log.make_writer(str(tmp_path), True)
  for step in (2, 4, 6, 8):
    writer.write_scalars(step, {"train/loss": 1.0 / step})
  writer.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 9, "train/lo')  # a line cut short by the crash
  assert run_log.drop_records_after(str(tmp_path), 4) == 3 + 2  # jsonl lines + events
  with open(tmp_path / "metrics.jsonl") as f:
    assert [json.loads(line)["step"] for line in f] == [2, 4]
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  events = EventAccumulator(str(tmp_path))
  events.Reload()
  assert [e.step for e in events.Tensors("train/loss")] == [2, 4]
  assert tb_events.drop_after(str(tmp_path), 4) == 0


def test_the_final_line_gives_the_test_error_at_the_best_validation_error():
  import launch
  summary = {"method": "dgl", "executor": "fused", "model": "cifar_resnet8",
             "dataset": "fashion_mnist", "num_modules": 3, "epochs": 4, "final_test_error": 20.5,
             "best_test_error": 19.0, "best_epoch": 3, "best_validation_epoch": 2,
             "test_error_at_best_validation": 21.25}
  assert launch.final_line(summary).endswith(
      "best 19.00% (epoch 3); at the best validation error (epoch 2) 21.25%")
