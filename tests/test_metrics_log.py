"""arm_jax.training.metrics: JSONL, TensorBoard files (tensorboardX, read back here by an
independent TFRecord / Event parser), plots and progress bar."""

import glob
import json
import logging
import math
import os
import struct

import jax
import numpy as np
import pytest

from arm_jax.training import metrics as metrics_log


# An independent reader: bitwise CRC-32C, TFRecord framing and protobuf decoding by hand.


def _reference_crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for byte in data:
    crc ^= byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
  return crc ^ 0xFFFFFFFF


def _unmask(masked: int) -> int:
  rot = (masked - 0xA282EAD8) % 2**32
  return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _read_tfrecords(path: str) -> list[bytes]:
  blob, pos, records = open(path, "rb").read(), 0, []
  while pos < len(blob):
    header = blob[pos:pos + 8]
    (length,), (length_crc,) = struct.unpack("<Q", header), struct.unpack_from("<I", blob, pos + 8)
    assert _unmask(length_crc) == _reference_crc32c(header)
    data = blob[pos + 12:pos + 12 + length]
    (data_crc,) = struct.unpack_from("<I", blob, pos + 12 + length)
    assert _unmask(data_crc) == _reference_crc32c(data)
    records.append(data)
    pos += 16 + length
  assert pos == len(blob)
  return records


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
  value, shift = 0, 0
  while True:
    byte = data[pos]
    value |= (byte & 0x7F) << shift
    pos, shift = pos + 1, shift + 7
    if not byte & 0x80:
      return value, pos


def _fields(data: bytes) -> dict[int, list]:
  """field number -> values: ints (varint), raw bytes (fixed64/fixed32/length-delimited)."""
  out, pos = {}, 0
  while pos < len(data):
    key, pos = _read_varint(data, pos)
    field, wire = key >> 3, key & 7
    if wire == 0:
      value, pos = _read_varint(data, pos)
    elif wire == 1:
      value, pos = data[pos:pos + 8], pos + 8
    elif wire == 5:
      value, pos = data[pos:pos + 4], pos + 4
    else:
      assert wire == 2
      length, pos = _read_varint(data, pos)
      value, pos = data[pos:pos + length], pos + length
    out.setdefault(field, []).append(value)
  return out


def _read_events(path: str) -> tuple[str, list[tuple[int, str, float]]]:
  """(file_version of the first event, [(step, tag, value)] of the others)."""
  first, *rest = [_fields(r) for r in _read_tfrecords(path)]
  assert struct.unpack("<d", first[1][0])[0] > 0
  scalars = []
  for event in rest:
    assert 3 not in event
    step = event.get(2, [0])[0]
    for value in _fields(event[5][0])[1]:
      value = _fields(value)
      scalars.append((step, value[1][0].decode(), struct.unpack("<f", value[2][0])[0]))
  return first[3][0].decode(), scalars


def _event_files(workdir) -> list[str]:
  return sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*")))


def _f32(x: float) -> float:
  return float(np.float32(x))


def test_the_readers_crc32c_matches_the_known_vector():
  """The reader below checks every record's CRC32C (TFRecord framing) with this reference."""
  assert _reference_crc32c(b"123456789") == 0xE3069283
  # RFC 3720's iSCSI vectors: 32 zero bytes, 32 0xFF bytes.
  assert _reference_crc32c(bytes(32)) == 0x8A9136AA
  assert _reference_crc32c(b"\xff" * 32) == 0x62A8AB43


def test_event_file_reads_back_tags_steps_and_values(tmp_path):
  with metrics_log.MetricsWriter(str(tmp_path)) as writer:
    writer.write({"phase": "judge", "global_step": 3, "loss": 0.1, "kl": np.float32(2.5),
                  "clipped": True, "note": "x"})
    writer.write({"global_step": 300, "reward_mean": -1.25})
    writer.write({"phase": "eval", "step": 7, "judge_accuracy": np.float64(0.6)})
    writer.write({"phase": "sft", "loss": 1.0})  # no step: JSONL only
  (path,) = _event_files(tmp_path)
  version, scalars = _read_events(path)
  assert version == "brain.Event:2"
  assert scalars == [(3, "judge/loss", _f32(0.1)), (3, "judge/kl", 2.5),
                     (300, "train/reward_mean", -1.25), (7, "eval/judge_accuracy", _f32(0.6))]


def test_jsonl_lines_are_valid_json_with_nonfinite_as_null(tmp_path):
  with metrics_log.MetricsWriter(str(tmp_path), tensorboard=False) as writer:
    writer.write({"global_step": np.int64(1), "loss": float("nan"), "kl": np.float32("inf"),
                  "ok": np.bool_(True), "x": None})
    writer.write({"global_step": 2, "loss": 0.5})
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line) for line in lines] == [
      {"global_step": 1, "loss": None, "kl": None, "ok": True, "x": None},
      {"global_step": 2, "loss": 0.5}]
  assert "NaN" not in lines[0] and "Infinity" not in lines[0]
  assert not (tmp_path / "tensorboard").exists()


def test_nonfinite_values_stay_in_tensorboard_without_a_warning_each(tmp_path, caplog):
  with metrics_log.MetricsWriter(str(tmp_path)) as writer:
    with caplog.at_level(logging.WARNING):
      writer.write({"global_step": 1, "loss": float("nan"), "kl": 1e40})
  _, scalars = _read_events(_event_files(tmp_path)[0])
  assert np.isnan(scalars[0][2]) and scalars[1] == (1, "train/kl", float("inf"))
  assert not [r for r in caplog.records if "NaN or Inf" in r.getMessage()]


def test_truncate_restores_earlier_bytes_and_starts_a_new_event_file(tmp_path):
  metrics = tmp_path / "metrics.jsonl"
  with metrics_log.MetricsWriter(str(tmp_path)) as writer:
    writer.write({"global_step": 1, "loss": 1.0})
    offset = writer.offset()
    saved = metrics.read_bytes()
    assert offset == len(saved)
    writer.write({"global_step": 2, "loss": 2.0})
    writer.truncate(offset)
    assert metrics.read_bytes() == saved and writer.offset() == offset
    with pytest.raises(ValueError):
      writer.truncate(offset + 1)
    writer.write({"global_step": 2, "loss": 3.0})
  assert metrics.read_bytes() == saved + b'{"global_step": 2, "loss": 3.0}\n'
  old, new = _event_files(tmp_path)
  assert _read_events(old) == ("brain.Event:2", [(1, "train/loss", 1.0), (2, "train/loss", 2.0)])
  assert _read_events(new) == ("brain.Event:2", [(2, "train/loss", 3.0)])


def test_resumed_writer_appends_to_existing_log(tmp_path):
  with metrics_log.MetricsWriter(str(tmp_path), tensorboard=False) as writer:
    writer.write({"global_step": 1})
    offset = writer.offset()
  with metrics_log.MetricsWriter(str(tmp_path), tensorboard=False) as writer:
    assert writer.offset() == offset
    writer.write({"global_step": 2})
  assert (tmp_path / "metrics.jsonl").read_text() == '{"global_step": 1}\n{"global_step": 2}\n'


def test_nonzero_process_writes_nothing(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  workdir = tmp_path / "run"
  with metrics_log.MetricsWriter(str(workdir)) as writer:
    writer.write({"global_step": 1, "loss": 1.0})
    assert writer.offset() == 0
    writer.truncate(0)
  assert not workdir.exists()


def test_plot_curves_writes_png(tmp_path):
  records = []
  for step in range(4):
    records.append({"phase": "sft", "global_step": step, "loss": 2.0 - 0.1 * step})
  for step in range(4, 8):
    records.append({"phase": "judge", "global_step": step, "reward_mean": 0.1 * step,
                    "accuracy": 0.5, "kl": None, "grad_variance": 0.01})
    records.append({"phase": "generator", "global_step": step, "reward_mean": 0.2,
                    "format_rate": 0.9, "loss": 0.3})
  records += [{"phase": "eval", "round": r, "judge_accuracy": 0.5 + 0.1 * r} for r in range(3)]
  records[-1].update(rubric_exact=0.9, judge_marks=0.7)  # the toy's reading checks, last round
  metrics = tmp_path / "metrics.jsonl"
  metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
  out = tmp_path / "plots" / "curves.png"
  metrics_log.plot_curves(str(metrics), str(out))
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000
  titles = [title for title, _, _ in metrics_log._panels(records)]  # pylint: disable=protected-access
  assert titles == ["reward_mean", "accuracy", "format_rate", "grad_variance", "loss",
                    "eval judge_accuracy", "eval reading"]
  assert metrics_log._panels(records)[-1][2] == {  # pylint: disable=protected-access
      "rubric_exact": ([2], [0.9]), "judge_marks": ([2], [0.7])}


def test_each_policys_line_breaks_across_the_other_policys_phase(tmp_path):
  """Rounds alternate judge and generator phases: the judge's line stops at the end of its
  phase and starts again at its next one (a NaN between), never drawn across the generator's."""
  records = [{"phase": "data", "train_pairs": 10}]
  step = 0
  for round_ in range(2):
    for phase in ("judge", "generator"):
      for _ in range(3):
        records.append({"phase": phase, "round": round_, "global_step": step,
                        "reward_mean": 0.1 * step})
        step += 1
    records.append({"phase": "eval", "round": round_, "judge_accuracy": 0.5})
  lines = dict(metrics_log._panels(records)[0][2])  # pylint: disable=protected-access
  xs, ys = lines["judge"]
  assert xs == [0, 1, 2, 6, 6, 7, 8]
  assert ys[:3] == pytest.approx([0.0, 0.1, 0.2]) and math.isnan(ys[3])
  assert ys[4:] == pytest.approx([0.6, 0.7, 0.8])
  gx, gy = lines["generator"]
  assert gx == [3, 4, 5, 9, 9, 10, 11] and math.isnan(gy[3])
  metrics = tmp_path / "metrics.jsonl"
  metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
  metrics_log.plot_curves(str(metrics), str(tmp_path / "curves.png"))  # NaN gaps draw


def test_plot_curves_rejects_a_log_without_metrics(tmp_path):
  metrics = tmp_path / "metrics.jsonl"
  metrics.write_text('{"global_step": 1, "other": 2}\n')
  with pytest.raises(ValueError):
    metrics_log.plot_curves(str(metrics), str(tmp_path / "out.png"))


def test_progress_shows_postfix_on_stderr_for_process_zero(capsys, monkeypatch):
  bar = metrics_log.Progress(total=3, desc="judge")
  bar.update(loss=np.float32(0.5))
  bar.update(2)
  bar.close()
  err = capsys.readouterr().err
  assert "judge" in err and "3/3" in err and "loss=0.5" in err
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  bar = metrics_log.Progress(total=3, desc="silent")
  bar.update(3)
  bar.close()
  assert capsys.readouterr().err == ""
