"""TensorBoard events without TensorFlow (jax_local/tb_events.py), read back record by record."""
import os
import struct
import sys

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

from jax_local import run_log, tb_events


def read_events(path):
  """Events of a TFRecord file, checking both CRCs of every record."""
  events = []
  with open(path, "rb") as f:
    data = f.read()
  pos = 0
  while pos < len(data):
    header = data[pos:pos + 8]
    (length,) = struct.unpack("<Q", header)
    assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == masked_crc32c(header)
    body = data[pos + 12:pos + 12 + length]
    assert struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] == masked_crc32c(body)
    events.append(event_pb2.Event.FromString(body))
    pos += 16 + length
  return events


def test_scalars_and_hparams_round_trip(tmp_path):
  w = tb_events.EventWriter(str(tmp_path))
  w.write_scalars(7, {"loss": 1.25, "test_examples": 100})
  w.write_hparams({"config": '{"seed": 0}', "num_modules": 3, "lr": 0.1, "bad": [1]})
  w.close()
  events = read_events(w.path)
  assert events[0].file_version == "brain.Event:2"
  scalars = {v.tag: (e.step, float(tensor_util.make_ndarray(v.tensor)), v.metadata.plugin_data)
             for e in events[1:] for v in e.summary.value if v.metadata.plugin_data.plugin_name
             == "scalars"}
  assert {k: s[:2] for k, s in scalars.items()} == {"loss": (7, 1.25), "test_examples": (7, 100.0)}
  (hp,) = [v for e in events for v in e.summary.value
           if v.metadata.plugin_data.plugin_name == "hparams"]
  start = plugin_data_pb2.HParamsPluginData.FromString(
      hp.metadata.plugin_data.content).session_start_info
  assert start.hparams["num_modules"].number_value == 3
  assert start.hparams["config"].string_value == '{"seed": 0}'
  assert start.hparams["bad"].string_value == "[1]"


def test_without_tensorboard_one_warning_and_no_events(tmp_path, monkeypatch, caplog):
  monkeypatch.setitem(sys.modules, "tensorboard", None)   # import tensorboard -> ImportError
  monkeypatch.setattr(tb_events.LOG, "propagate", True)    # configure_console may have cut it
  with caplog.at_level("WARNING", logger="jax_local"):
    assert tb_events.make_event_writer(str(tmp_path)) is None
  assert [r.getMessage() for r in caplog.records] == [
      f"the tensorboard package is not installed: no TensorBoard events in {tmp_path} "
      "(metrics.jsonl holds every scalar)"]


def test_run_writer_keeps_jsonl_and_hparams_json(tmp_path):
  w = run_log.make_writer(str(tmp_path), is_main=True)
  w.write_hparams({"num_modules": 3})
  w.write_scalars(1, {"loss": np.float32(0.5)})
  w.write_scalars(2, {"loss": 0.25, "lr": 0.1})
  w.close()
  assert run_log.read_json(str(tmp_path / "hparams.json")) == {"num_modules": 3}
  with open(tmp_path / "metrics.jsonl") as f:
    assert f.read().splitlines() == ['{"step": 1, "loss": 0.5}',
                                     '{"step": 2, "loss": 0.25, "lr": 0.1}']
  (events,) = [n for n in os.listdir(tmp_path) if n.startswith("events.out.tfevents.")]
  assert sum(len(e.summary.value) for e in read_events(tmp_path / events)) == 4
  other = tmp_path / "other"
  other.mkdir()
  w = run_log.make_writer(str(other), is_main=False)
  w.write_scalars(1, {"loss": 0.5})
  w.close()
  assert os.listdir(other) == []
