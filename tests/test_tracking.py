"""Experiment tracking: offline wandb runs (metrics, config, resume from a checkpoint) and TensorBoard."""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

import pytest
import torch

from tasks.jobs.tracking import CHECKPOINT_KEY, offline_run_folders, wandb_offline
from tests.helpers import LOGIC_TINY_RUN, TINY_MODEL, requires_data
from train import train

LM_RUN = [
    *TINY_MODEL,
    "task.datamodule.train_fraction=0.01",
    "task.datamodule.batch_size=4",
    "task.datamodule.eval_batch_size=5",
    "task.datamodule.bptt=20",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
]
LOGIC_RUN = LOGIC_TINY_RUN


def test_wandb_is_offline_without_a_key(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_offline() is True
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_offline() is False  # `wandb login` configured a key
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_offline() is True
    monkeypatch.setenv("WANDB_MODE", "online")
    assert wandb_offline() is False


def wandb_records(path: Path) -> list:
    """The protobuf records of a ``run-<id>.wandb`` file.

    The file is a LevelDB-style log (wandb's ``datastore`` format): a 7-byte header (":W&B", magic,
    version), then 32 KiB blocks of chunks, each with a 7-byte header (crc32 of type + payload 4,
    length 2 little endian, type 1: full / first / middle / last piece of a record). As LevelDB's
    readers do, a zeroed chunk header ends the block (the writer may pad a block when it flushes)
    and every chunk's checksum is verified, so a misread fails loudly instead of dropping records.
    """
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", path
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # too small for a chunk header: padding up to the next block
            pos += left
            continue
        crc, length = int.from_bytes(data[pos : pos + 4], "little"), int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        if kind == 0:  # zeroed rest of the block
            assert crc == 0 and length == 0, f"{path}: chunk of type 0 with data at byte {pos}"
            pos += left
            continue
        payload = data[pos + 7 : pos + 7 + length]
        assert len(payload) == length, f"{path}: truncated chunk at byte {pos} ({len(data)} bytes)"
        assert zlib.crc32(bytes([kind]) + payload) == crc, f"{path}: checksum mismatch at byte {pos}"
        pending += payload
        pos += 7 + length
        if kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def finished_wandb_records(path: Path, wait_s: float = 30.0) -> list:
    """The records once the run's ``exit`` record is on disk (wandb-core may still be writing)."""
    deadline = time.monotonic() + wait_s
    while True:
        records = wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def wandb_contents(run: Path) -> tuple[dict, dict, list[str]]:
    """(last logged value of each metric, config, tags) of an offline run, from its .wandb file."""
    [log_file] = run.glob("run-*.wandb")
    history: dict = {}
    config: dict = {}
    tags: list[str] = []
    for record in finished_wandb_records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "config":
            config.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.config.update})
        elif kind == "run":
            tags = list(record.run.tags)
    return history, config, tags


def record_outline(run: Path) -> str:
    """Record types in file order, with the keys of history records: what a failed check prints."""
    [log_file] = run.glob("run-*.wandb")
    lines = []
    for record in wandb_records(log_file):
        kind = record.WhichOneof("record_type")
        keys = [i.key or "/".join(i.nested_key) for i in record.history.item] if kind == "history" else ""
        lines.append(f"{kind} {keys}")
    return f"{log_file} ({log_file.stat().st_size} bytes):\n" + "\n".join(lines)


def only_offline_run(out: Path) -> Path:
    runs = offline_run_folders(out)
    assert len(runs) == 1, runs
    return runs[0]


@requires_data("ptb/train.txt", "ptb/valid.txt", "ptb/test.txt")
def test_offline_wandb_run_holds_metrics_config_and_resumes_from_a_checkpoint(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg([*LM_RUN, "logger=wandb", "tags=[ci,ddp-test]"], subdir="first")
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    run = only_offline_run(out)
    run_id = run.name.rsplit("-", 1)[-1]
    assert (run / f"run-{run_id}.wandb").is_file()

    history, config, tags = wandb_contents(run)
    assert {"val/ppl", "test/ppl", "trainer/global_step"} <= history.keys(), record_outline(run)
    assert history["val/ppl"] == pytest.approx(metrics["val/ppl"])
    assert history["test/ppl"] == pytest.approx(metrics["test/ppl"])
    assert history["trainer/global_step"] == 3
    assert config["model"]["chunk_size"] == 4 and config["task"]["name"] == "lm" and config["seed"] == 141
    assert tags == ["ci", "ddp-test"]

    last = out / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)[CHECKPOINT_KEY] == run_id

    # resuming from the checkpoint continues the same run id (train() finished the first run)
    resumed = make_cfg([*LM_RUN, "logger=wandb", "trainer.max_epochs=2", f"ckpt_path={last}"], subdir="resumed")
    train(resumed)
    assert only_offline_run(Path(resumed.paths.output_dir)).name.endswith(f"-{run_id}")


@requires_data("logic/train0", "logic/test1")
def test_tensorboard_events_hold_metrics_figures_and_tables(make_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg([*LOGIC_RUN, "logger=tensorboard"])
    metrics = train(cfg)
    events = EventAccumulator(str(Path(cfg.paths.output_dir) / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"val/acc", "test/acc", "test/acc_ops1", "train/loss_epoch"} <= set(tags["scalars"])
    assert events.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"])
    assert events.Scalars("val/acc")[-1].value == pytest.approx(metrics["val/acc"])
    assert "test/acc_by_ops" in tags["images"]  # the figure
    assert any(tag.startswith("test/acc_by_ops") for tag in tags["tensors"])  # the markdown table
