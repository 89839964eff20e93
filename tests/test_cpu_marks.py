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
    assert caplog.messages == ["CPU mark 1 min passed at step 7 before any best checkpoint was saved: "
                               "no best_cpu001min.ckpt"]
    assert list(tmp_path.iterdir()) == []


def test_marks_need_the_cpu_time_clock_and_positive_minutes(tmp_path):
    with pytest.raises(ValueError, match="best_at_cpu_marks.minutes"):
        KeepBestAtCpuMarks([40, 0], dirpath=str(tmp_path))
    marks = KeepBestAtCpuMarks([40], dirpath=str(tmp_path))
    with pytest.raises(ValueError) as refused:
        marks.on_fit_start(SimpleNamespace(callbacks=[]), None)
    assert str(refused.value) == "callbacks.best_at_cpu_marks needs callbacks.cpu_time_budget: the marks are on its clock"


def test_an_empty_list_of_marks_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"best_at_cpu_marks.minutes must be positive numbers, got \[\]"):
        KeepBestAtCpuMarks([], dirpath=str(tmp_path))


def test_only_rank_zero_copies_a_mark(tmp_path):
    """Under DDP every rank passes the mark; one copy is written, by rank zero (break: `or` into `and`)."""
    best = tmp_path / "best.ckpt"
    best.write_text("validation 1")
    clock = Clock()
    trainer = fake_trainer(clock, str(best))
    trainer.is_global_zero = False
    marks = KeepBestAtCpuMarks([40], dirpath=str(tmp_path / "kept"))
    clock.minutes_used = 41.0
    marks.on_train_batch_end(trainer)
    assert not (tmp_path / "kept").exists()


def test_marks_passed_before_the_best_checkpoint_exists_are_skipped_for_good(tmp_path, caplog):
    """A best checkpoint named but not (yet) on disk counts as none: each mark passed is named in a
    warning and never copied later from a later best (break: `continue` into `break`, or drop the
    is_file check: the copy fails)."""
    best = tmp_path / "best.ckpt"
    clock = Clock()
    trainer = fake_trainer(clock, str(best))
    marks = KeepBestAtCpuMarks([1, 2], dirpath=str(tmp_path / "kept"))
    clock.minutes_used = 3.0
    with caplog.at_level(logging.WARNING, logger="onlstm.train"):
        marks.on_train_batch_end(trainer)
    assert "best_cpu001min.ckpt" in caplog.text and "best_cpu002min.ckpt" in caplog.text
    best.write_text("a later best")
    clock.minutes_used = 4.0
    marks.on_train_end(trainer, None)
    assert not (tmp_path / "kept").exists()


def test_a_mark_is_copied_into_a_folder_made_for_it(tmp_path):
    best = tmp_path / "best.ckpt"
    best.write_text("validation 1")
    clock = Clock()
    kept = tmp_path / "run" / "checkpoints"
    marks = KeepBestAtCpuMarks([40], dirpath=str(kept))
    clock.minutes_used = 40.0
    marks.on_train_batch_end(fake_trainer(clock, str(best)))
    assert [p.name for p in kept.iterdir()] == ["best_cpu040min.ckpt"]  # no temporary file left beside it


def test_the_marks_done_travel_in_the_checkpoint_as_a_sorted_list(tmp_path):
    """The checkpoint's entry (a list of floats under "done", in order: 15 and 17 are the marks a
    set of floats iterates the other way round), which a resumed run and older checkpoints load."""
    best = tmp_path / "best.ckpt"
    best.write_text("validation 1")
    clock = Clock()
    marks = KeepBestAtCpuMarks([120, 17, 15], dirpath=str(tmp_path / "kept"))
    assert marks.state_dict() == {"done": []}
    clock.minutes_used = 18.0
    marks.on_train_batch_end(fake_trainer(clock, str(best)))
    assert marks.state_dict() == {"done": [15.0, 17.0]}
    resumed = KeepBestAtCpuMarks([120, 17, 15], dirpath=str(tmp_path / "kept"))
    resumed.load_state_dict({"done": [17, 15]})
    assert resumed.state_dict() == {"done": [15.0, 17.0]}


def test_each_mark_kept_is_logged_with_the_minutes_used_and_both_files(tmp_path, caplog):
    """One line per mark copied: the mark, the step, the CPU minutes used, the best checkpoint and
    where it is kept (break: a message or an argument dropped or changed)."""
    best = tmp_path / "best.ckpt"
    best.write_text("validation 1")
    clock = Clock()
    marks = KeepBestAtCpuMarks([40, 20], dirpath=str(tmp_path / "kept"))
    clock.minutes_used = 40.3
    with caplog.at_level(logging.INFO, logger="onlstm.train"):
        marks.on_train_batch_end(fake_trainer(clock, str(best)))
    assert caplog.messages == [
        f"CPU mark {mark} min passed at step 7 (40.3 CPU min used): {best} kept as {tmp_path / 'kept' / name}"
        for mark, name in ((20, "best_cpu020min.ckpt"), (40, "best_cpu040min.ckpt"))]
