"""CpuTimeBudget: a run stops once it has used its CPU minutes, the attempts of a resumed run added
up (the budget of every evidence run: docs/preregistration.md). The process clock is set by hand."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

import tasks.jobs.callbacks
from tasks.jobs.callbacks import CpuTimeBudget


@pytest.fixture
def clock(monkeypatch):
    """The process's CPU clock, in seconds, moved by hand."""
    now = SimpleNamespace(seconds=1000.0)
    monkeypatch.setattr(tasks.jobs.callbacks.time, "process_time", lambda: now.seconds)
    return now


def trainer(fn: str = "fit", sanity_checking: bool = False) -> SimpleNamespace:
    return SimpleNamespace(strategy=SimpleNamespace(broadcast=lambda value: value), should_stop=False, global_step=12,
                           sanity_checking=sanity_checking, state=SimpleNamespace(fn=fn))


def test_training_stops_at_the_first_batch_that_ends_with_the_budget_used(clock):
    budget, run = CpuTimeBudget(minutes=2), trainer()
    budget.on_fit_start(run, None)  # the clock starts here: what the process used before is not counted
    clock.seconds += 119.0
    budget.on_train_batch_end(run)
    assert not run.should_stop and budget.used_seconds() == 119.0
    clock.seconds += 1.0  # exactly the budget
    budget.on_train_batch_end(run)
    assert run.should_stop


@pytest.mark.parametrize("restored_first", [True, False])
def test_a_resumed_run_counts_the_cpu_time_of_its_earlier_attempts(clock, restored_first):
    """Lightning restores callbacks' state before on_fit_start (after it, for strategies that
    restore after setup): either way the earlier attempts' time counts."""
    first, run = CpuTimeBudget(minutes=2), trainer()
    first.on_fit_start(run, None)
    clock.seconds += 90.0
    saved = first.state_dict()  # in the checkpoint
    assert saved == {"cpu_seconds": 90.0}

    clock.seconds += 500.0  # another process, later: its own clock reading
    resumed, again = CpuTimeBudget(minutes=2), trainer()
    if restored_first:
        resumed.load_state_dict(saved)
        resumed.on_fit_start(again, None)
    else:
        resumed.on_fit_start(again, None)
        resumed.load_state_dict(saved)
    clock.seconds += 29.0
    resumed.on_train_batch_end(again)
    assert not again.should_stop and resumed.used_seconds() == 119.0
    clock.seconds += 1.0
    resumed.on_train_batch_end(again)
    assert again.should_stop


def test_a_run_resumed_with_its_budget_spent_trains_no_further_batch(clock):
    budget, run = CpuTimeBudget(minutes=1), trainer()
    budget.on_fit_start(run, None)
    budget.load_state_dict({"cpu_seconds": 60.0})
    budget.on_train_start(run, None)
    assert run.should_stop


def test_the_minutes_used_are_logged_at_each_validation_of_fit_only(clock):
    """The clock moves between the three validations, so the one value logged says which one logged
    it (break: log at the sanity check instead, or at trainer.validate())."""
    budget = CpuTimeBudget(minutes=10)
    budget.on_fit_start(trainer(), None)
    logged = []
    module = SimpleNamespace(log=lambda name, value: logged.append((name, value)))
    clock.seconds += 30.0
    budget.on_validation_epoch_end(trainer(sanity_checking=True), module)
    clock.seconds += 30.0
    budget.on_validation_epoch_end(trainer(fn="validate"), module)
    clock.seconds += 30.0
    budget.on_validation_epoch_end(trainer(), module)
    assert logged == [("time/cpu_minutes", 1.5)]


@pytest.mark.parametrize("minutes", [0, -5])
def test_a_budget_that_is_not_positive_is_refused_naming_the_key(minutes):
    with pytest.raises(ValueError) as refused:
        CpuTimeBudget(minutes=minutes)
    assert str(refused.value) == f"callbacks.cpu_time_budget.minutes must be positive, got {minutes}"


def test_a_budget_not_started_has_used_nothing(clock):
    """Before fit starts (a checkpoint written then, a run with no earlier attempt) the budget has
    used 0 seconds, whatever the process's clock reads (break: count 1 second, or read the clock
    against a start that was never set)."""
    budget = CpuTimeBudget(minutes=2)
    assert budget.used_seconds() == 0.0
    assert budget.state_dict() == {"cpu_seconds": 0.0}


def test_the_stop_is_logged_with_the_budget_in_minutes_and_the_step(clock, caplog):
    """One line when the budget stops the run: its minutes (30.0, which a wrong divisor would show as
    29.5 or 108000.0) and the step reached; none at a later batch (break: a message or an argument
    dropped or changed)."""
    budget, run = CpuTimeBudget(minutes=30), trainer()
    budget.on_fit_start(run, None)
    clock.seconds += 1800.0
    with caplog.at_level(logging.INFO, logger="onlstm.train"):
        budget.on_train_batch_end(run)
        budget.on_train_batch_end(run)
    assert caplog.messages == ["CPU-time budget of 30.0 minutes used up at step 12: stopping"]
