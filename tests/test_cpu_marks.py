"""KeepBestAtCpuMarks: the best checkpoint so far kept as the CPU-time clock passes each mark
(what the parsing-curve evidence parses: docs/preregistration.md, question 2)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from tasks.jobs.callbacks import CpuTimeBudget, KeepBestAtCpuMarks


class Clock(CpuTimeBudget):
    """The budget's clock, set by hand."""

    def __init__(self):
        super().__init__(minutes=1000)
        self.minutes_used = 0.0

    def used_seconds(self) -> float:
        return 60.0 * self.minutes_used


def fake_trainer(clock: Clock, best: str) -> SimpleNamespace:
    return SimpleNamespace(callbacks=[clock], checkpoint_callback=SimpleNamespace(best_model_path=best),
                           is_global_zero=True, global_step=7)


def test_each_mark_keeps_the_best_checkpoint_of_its_time_and_never_a_later_one(tmp_path):
    best = tmp_path / "best.ckpt"
    clock = Clock()
    trainer = fake_trainer(clock, str(best))
    marks = KeepBestAtCpuMarks([60, 40], dirpath=str(tmp_path / "kept"))
    marks.on_fit_start(trainer, None)

    best.write_text("validation 1")
    clock.minutes_used = 39.9
    marks.on_train_batch_end(trainer)
    assert not (tmp_path / "kept").exists()  # no mark passed yet

    clock.minutes_used = 40.2
    marks.on_train_batch_end(trainer)
    best.write_text("validation 2")  # a better validation after the 40-minute mark
    clock.minutes_used = 45.0
    marks.on_train_batch_end(trainer)
    assert (tmp_path / "kept" / "best_cpu040min.ckpt").read_text() == "validation 1"
    assert not (tmp_path / "kept" / "best_cpu060min.ckpt").exists()

    clock.minutes_used = 60.0
    marks.on_train_end(trainer, None)  # the final mark, passed as training stops
    assert (tmp_path / "kept" / "best_cpu060min.ckpt").read_text() == "validation 2"
    assert (tmp_path / "kept" / "best_cpu040min.ckpt").read_text() == "validation 1"
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["best_cpu040min.ckpt", "best_cpu060min.ckpt"]


def test_a_resumed_run_does_not_copy_a_mark_again_from_a_later_best(tmp_path):
    best = tmp_path / "best.ckpt"
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "best_cpu040min.ckpt").write_text("from the first attempt")
    clock = Clock()
    trainer = fake_trainer(clock, str(best))
    first = KeepBestAtCpuMarks([40, 120], dirpath=str(kept))
    first.done = {40.0}
    resumed = KeepBestAtCpuMarks([40, 120], dirpath=str(kept))
    resumed.load_state_dict(first.state_dict())  # what the checkpoint carries

    best.write_text("a later best")
    clock.minutes_used = 130.0
    resumed.on_train_batch_end(trainer)
    assert (kept / "best_cpu040min.ckpt").read_text() == "from the first attempt"
    assert (kept / "best_cpu120min.ckpt").read_text() == "a later best"


def test_a_mark_passed_before_any_best_checkpoint_is_named_in_a_warning(tmp_path, caplog):
    clock = Clock()
    trainer = fake_trainer(clock, "")
    marks = KeepBestAtCpuMarks([1], dirpath=str(tmp_path))
    clock.minutes_used = 2.0
    with caplog.at_level(logging.WARNING, logger="onlstm.train"):
        marks.on_train_batch_end(trainer)
    assert "before any best checkpoint" in caplog.text and "best_cpu001min.ckpt" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_marks_need_the_cpu_time_clock_and_positive_minutes(tmp_path):
    with pytest.raises(ValueError, match="best_at_cpu_marks.minutes"):
        KeepBestAtCpuMarks([40, 0], dirpath=str(tmp_path))
    marks = KeepBestAtCpuMarks([40], dirpath=str(tmp_path))
    with pytest.raises(ValueError, match="needs callbacks.cpu_time_budget"):
        marks.on_fit_start(SimpleNamespace(callbacks=[]), None)
