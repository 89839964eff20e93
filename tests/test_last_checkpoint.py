"""The checkpoints the run machinery writes for itself (:mod:`tasks.jobs.callbacks`): ``last.ckpt``
(:class:`LastCheckpoint`: where a resumed run continues from, and what a signal saves) and
``initial.ckpt`` (:class:`SaveInitialWeights`). The end-to-end signal and resume runs are in
tests/test_reliability.py and tests/test_resume.py; here each save point and each signal case is
checked alone, on a seconds-long Lightning run of its demo model or on a hand-set Trainer."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.demos.boring_classes import BoringModel
from pytorch_lightning.utilities.exceptions import SIGTERMException

from tasks.jobs.callbacks import LastCheckpoint, SaveInitialWeights


# ----------------------------------------------------------------------------- a real (tiny) fit
class Counts(pl.Callback):
    """How many validations (outside the sanity check) and epoch ends have run so far."""

    def __init__(self):
        self.validations = self.epoch_ends = 0

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validations += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epoch_ends += 1


def test_last_checkpoint_saves_every_n_steps_after_validations_and_at_epoch_end_once_each(tmp_path):
    """8 batches, a validation every 4, a save every 2 steps: last.ckpt at steps 2 and 6 (the
    interval), 4 (after the validation that follows that batch, not before it) and 8 (after the
    epoch-end hooks, not at the validation of the last batch), each once, with the full state
    (break: drop the `_should_check_val_fx` check: step 4 is saved before its validation; drop the
    is_last_batch return in on_validation_end: step 8 is saved before the epoch-end hooks)."""
    counts = Counts()
    last = LastCheckpoint(str(tmp_path / "checkpoints"), every_n_train_steps=2)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=8, val_check_interval=4, limit_val_batches=1,
                         num_sanity_val_steps=1, callbacks=[counts, last], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=str(tmp_path))
    saves = []
    save_checkpoint = trainer.save_checkpoint

    def recording_save(path, weights_only=None, storage_options=None):
        saves.append((trainer.global_step, counts.validations, counts.epoch_ends, weights_only))
        save_checkpoint(path, weights_only=weights_only, storage_options=storage_options)

    trainer.save_checkpoint = recording_save
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    trainer.fit(BoringModel())
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # given back after fit
    # (step, validations done, epoch ends done, weights_only)
    assert saves == [(2, 0, 0, False), (4, 1, 0, False), (6, 1, 0, False), (8, 2, 1, False)]
    stored = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert stored["global_step"] == 8 and stored["optimizer_states"]  # what resuming needs


# ----------------------------------------------------------------------------- a Trainer set by hand
class HandTrainer:
    """What LastCheckpoint reads of a Trainer, set by hand; ``saved``: (step, path, weights_only)
    of every checkpoint written. ``validation_follows``: Lightning's decision that this batch
    ends with a validation."""

    def __init__(self, step: int = 0, world_size: int = 1, other_rank_signalled: bool = False):
        self.global_step = step
        self.world_size = world_size
        self.current_epoch = 0
        self.sanity_checking = self.validating = self.fast_dev_run = self.should_stop = False
        self.state = SimpleNamespace(fn="fit")
        self.validation_follows = False
        self.saved: list[tuple[int, Path, bool | None]] = []
        epoch_loop = SimpleNamespace(batch_progress=SimpleNamespace(is_last_batch=False), _is_training_done=False,
                                     _should_check_val_fx=lambda fetcher: self.validation_follows)
        self.fit_loop = SimpleNamespace(epoch_loop=epoch_loop, _data_fetcher=object())
        self.other_rank_signalled = other_rank_signalled
        self.strategy = SimpleNamespace(reduce_boolean_decision=self._reduce_boolean_decision)

    def _reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """Two ranks, this one and another, which got a signal or not; as Lightning's DDP reduces a
        decision: int(decision) summed over the ranks (a decision that is no bool fails there)."""
        votes = int(decision) + int(self.other_rank_signalled)
        return votes == self.world_size if all else votes > 0

    @property
    def epoch_loop(self):
        return self.fit_loop.epoch_loop

    def save_checkpoint(self, path, weights_only=None) -> None:
        self.saved.append((self.global_step, Path(path), weights_only))

    def saved_steps(self) -> list[int]:
        return [step for step, _, _ in self.saved]


_lightning_calls: list[int] = []


def _lightnings_sigterm_handler(signum, frame) -> None:
    """A stand-in for the SIGTERM handler Lightning installs just before fit: the calls it gets."""
    _lightning_calls.append(signum)


@pytest.fixture
def lightnings_handler():
    """The signals passed on to Lightning's handler; the process's SIGTERM and SIGINT handlers are
    restored afterwards."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    _lightning_calls.clear()
    yield _lightning_calls
    signal.signal(signal.SIGTERM, before[0])
    signal.signal(signal.SIGINT, before[1])


def started(trainer: HandTrainer, every_n_train_steps: int = 0, dirpath: Path = Path("run/checkpoints")):
    """A LastCheckpoint at the start of training, after Lightning installed its SIGTERM handler."""
    signal.signal(signal.SIGTERM, _lightnings_sigterm_handler)
    callback = LastCheckpoint(str(dirpath), every_n_train_steps=every_n_train_steps)
    callback.on_train_start(trainer, None)
    return callback


def send(callback: LastCheckpoint, received: signal.Signals) -> None:
    """The callback's handler run as the signal would run it; a KeyboardInterrupt it should not
    raise fails the test (raised out of a test, it would stop the whole pytest session)."""
    try:
        callback._on_signal(received, None)
    except KeyboardInterrupt:
        pytest.fail(f"{received.name} raised KeyboardInterrupt")


def test_a_negative_step_interval_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"callbacks.last_checkpoint.every_n_train_steps must be >= 0, got -1"):
        LastCheckpoint(str(tmp_path), every_n_train_steps=-1)


def test_saves_every_n_steps_only_when_nothing_saves_after_the_batch(lightnings_handler):
    """every_n_train_steps=3 saves at steps 3 and 6, not between; when a validation, the epoch's
    end or the end of training follows the batch, the batch saves nothing (they save instead)
    (break: `%` test `!= 0`, or drop any of the three conditions of _more_follows_this_batch)."""
    trainer = HandTrainer()
    callback = started(trainer, every_n_train_steps=3)
    for step in range(1, 8):
        trainer.global_step = step
        callback.on_train_batch_end(trainer)
    assert trainer.saved_steps() == [3, 6]
    assert trainer.saved[0][1] == Path("run/checkpoints/last.ckpt") and trainer.saved[0][2] is False

    for follows in ("validation", "last batch", "should stop", "training done"):
        trainer = HandTrainer(step=9)
        callback = started(trainer, every_n_train_steps=3)
        trainer.global_step = 12
        trainer.validation_follows = follows == "validation"
        trainer.epoch_loop.batch_progress.is_last_batch = follows == "last batch"
        trainer.should_stop = follows == "should stop"
        trainer.epoch_loop._is_training_done = follows == "training done"
        callback.on_train_batch_end(trainer)
        assert trainer.saved == [], follows


def test_without_a_step_interval_batches_save_nothing(lightnings_handler):
    trainer = HandTrainer()
    callback = started(trainer)
    for step in range(1, 5):
        trainer.global_step = step
        callback.on_train_batch_end(trainer)
    assert trainer.saved == []


def test_by_default_batches_save_nothing(lightnings_handler):
    """every_n_train_steps is 0 unless given (break: a default of 1 saves after every batch)."""
    trainer = HandTrainer()
    callback = LastCheckpoint("run/checkpoints")
    callback.on_train_start(trainer, None)
    for step in range(1, 4):
        trainer.global_step = step
        callback.on_train_batch_end(trainer)
    assert trainer.saved == []


@pytest.mark.parametrize("missing", ["_should_check_val_fx", "_data_fetcher"])
def test_a_lightning_without_the_private_validation_decision_saves_at_the_interval(lightnings_handler, missing):
    """A Lightning whose epoch loop has no _should_check_val_fx (or whose fit loop has no
    _data_fetcher) saves at the step interval, before a validation that may follow, instead of
    failing (break: getattr without its None default raises AttributeError)."""
    trainer = HandTrainer()
    trainer.validation_follows = True  # what the private method would have said
    loop = trainer.epoch_loop if missing == "_should_check_val_fx" else trainer.fit_loop
    delattr(loop, missing)
    callback = started(trainer, every_n_train_steps=2)
    trainer.global_step = 2
    callback.on_train_batch_end(trainer)
    assert trainer.saved_steps() == [2]


def test_a_validation_inside_the_epoch_saves_and_other_validations_do_not(lightnings_handler):
    """A validation inside fit saves; the sanity check, a trainer.validate() call and the
    validation of the epoch's last batch (the epoch end saves after its hooks) do not."""
    trainer = HandTrainer()
    callback = started(trainer)
    trainer.global_step = 4
    trainer.sanity_checking = True
    callback.on_validation_end(trainer, None)
    trainer.sanity_checking = False
    trainer.state.fn = "validate"
    callback.on_validation_end(trainer, None)
    trainer.state.fn = "fit"
    trainer.epoch_loop.batch_progress.is_last_batch = True
    callback.on_validation_end(trainer, None)
    assert trainer.saved == []
    trainer.epoch_loop.batch_progress.is_last_batch = False
    callback.on_validation_end(trainer, None)
    assert trainer.saved_steps() == [4]


def test_a_resumed_run_saves_nothing_until_it_takes_a_step(lightnings_handler):
    """The state it resumed from is on disk already (break: forget the step in on_train_start)."""
    trainer = HandTrainer(step=20)
    callback = started(trainer)
    callback.on_train_epoch_end(trainer, None)
    callback.on_train_end(trainer, None)
    assert trainer.saved == []
    trainer.global_step = 21
    callback.on_train_epoch_end(trainer, None)
    assert trainer.saved_steps() == [21]


def test_a_fast_dev_run_leaves_no_last_checkpoint(lightnings_handler):
    """fast_dev_run trains a batch or two as a smoke test: no state worth resuming from."""
    trainer = HandTrainer()
    callback = started(trainer)
    trainer.global_step, trainer.fast_dev_run = 1, 1
    callback.on_train_epoch_end(trainer, None)
    callback.on_train_end(trainer, None)
    assert trainer.saved == []


@pytest.mark.parametrize("received", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_is_held_until_the_batch_ends_then_saved_and_passed_to_lightning(lightnings_handler, received):
    """on_train_start takes SIGTERM and SIGINT over; a signal saves nothing and stops nothing at
    once; at the end of the batch last.ckpt is saved at that step, and then the signal's number
    goes to the SIGTERM handler Lightning had installed, which stops the loops (break: install
    the handler for SIGTERM only, or pass the signal on before saving)."""
    trainer = HandTrainer(step=5)
    callback = started(trainer)
    assert signal.getsignal(signal.SIGTERM) == callback._on_signal
    assert signal.getsignal(signal.SIGINT) == callback._on_signal
    trainer.global_step = 7
    send(callback, received)
    assert trainer.saved == [] and lightnings_handler == []
    assert callback.stopped_by == received
    callback.on_train_batch_end(trainer)
    assert trainer.saved_steps() == [7] and lightnings_handler == [int(received)]


def test_a_signal_during_a_validation_is_saved_at_its_end(lightnings_handler):
    trainer = HandTrainer(step=3)
    callback = started(trainer)
    trainer.global_step = 4
    send(callback, signal.SIGTERM)
    trainer.validating = True
    assert lightnings_handler == []
    callback.on_validation_end(trainer, None)
    assert trainer.saved_steps() == [4] and lightnings_handler == [signal.SIGTERM]


def test_a_signal_at_the_epochs_end_is_saved_there_and_passed_on(lightnings_handler):
    trainer = HandTrainer(step=3)
    callback = started(trainer)
    trainer.global_step = 6
    send(callback, signal.SIGTERM)
    callback.on_train_epoch_end(trainer, None)
    assert trainer.saved_steps() == [6] and lightnings_handler == [signal.SIGTERM]


def test_a_second_ctrl_c_stops_at_once_and_a_second_sigterm_changes_nothing(lightnings_handler):
    """The stop already on its way is kept; only a second Ctrl-C raises KeyboardInterrupt at once
    (break: compare the second signal with SIGTERM instead of SIGINT)."""
    trainer = HandTrainer(step=2)
    callback = started(trainer)
    send(callback, signal.SIGTERM)
    send(callback, signal.SIGTERM)
    assert callback.stopped_by == signal.SIGTERM and lightnings_handler == []
    with pytest.raises(KeyboardInterrupt):
        callback._on_signal(signal.SIGINT, None)

    callback = started(HandTrainer(step=2))
    send(callback, signal.SIGINT)
    send(callback, signal.SIGTERM)
    assert callback.stopped_by == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        callback._on_signal(signal.SIGINT, None)


def test_a_signal_as_training_ends_saves_then_stops_before_testing(lightnings_handler):
    """A signal held when training ends: last.ckpt at the final step, then SIGTERMException (the
    test stage does not start); a signal after training ended goes to Lightning at once."""
    trainer = HandTrainer(step=0)
    callback = started(trainer)
    trainer.global_step = 10
    send(callback, signal.SIGTERM)
    with pytest.raises(SIGTERMException):
        callback.on_train_end(trainer, None)
    assert trainer.saved_steps() == [10]

    trainer = HandTrainer(step=0)
    callback = started(trainer)
    trainer.global_step = 10
    callback.on_train_end(trainer, None)  # no signal: saved, nothing raised
    assert trainer.saved_steps() == [10]
    send(callback, signal.SIGTERM)
    assert lightnings_handler == [signal.SIGTERM] and trainer.saved_steps() == [10]


def test_every_rank_saves_and_stops_when_another_rank_got_the_signal(lightnings_handler):
    """Under DDP the ranks agree (any rank's signal counts): this rank, which got none, saves at
    the same step and stops as for SIGTERM (break: reduce with all=True, or skip the reduction)."""
    trainer = HandTrainer(step=0, world_size=2, other_rank_signalled=True)
    callback = started(trainer)
    trainer.global_step = 5
    callback.on_train_batch_end(trainer)
    assert trainer.saved_steps() == [5] and lightnings_handler == [signal.SIGTERM]
    assert callback.stopped_by == signal.SIGTERM

    quiet = HandTrainer(step=0, world_size=2, other_rank_signalled=False)
    callback = started(quiet)
    quiet.global_step = 5
    callback.on_train_batch_end(quiet)
    assert quiet.saved == [] and callback.stopped_by is None


def test_under_ddp_the_rank_that_got_the_signal_saves_and_passes_it_on_once(lightnings_handler):
    """This rank alone got SIGTERM: it saves at the end of the validation and passes the signal on;
    a save point after that (the epoch's end at the same step) neither saves nor passes it again
    (break: reduce no decision or another one, or keep the signal pending once passed on)."""
    trainer = HandTrainer(step=0, world_size=2, other_rank_signalled=False)
    callback = started(trainer)
    trainer.global_step = 5
    send(callback, signal.SIGTERM)
    callback.on_validation_end(trainer, None)
    assert trainer.saved_steps() == [5] and lightnings_handler == [signal.SIGTERM]
    callback.on_train_epoch_end(trainer, None)
    assert trainer.saved_steps() == [5] and lightnings_handler == [signal.SIGTERM]


def test_after_an_error_a_signal_goes_to_lightning_at_once(lightnings_handler):
    """Once an exception has ended training nothing will save: a SIGTERM that comes while the run
    shuts down is passed on at once, not held for a save point that never comes (break: leave
    training marked as running in on_exception)."""
    trainer = HandTrainer(step=0)
    callback = started(trainer)
    trainer.global_step = 3
    callback.on_exception(trainer, None, RuntimeError("a bug"))
    send(callback, signal.SIGTERM)
    assert lightnings_handler == [signal.SIGTERM] and trainer.saved == []


def test_each_save_is_logged_with_its_step_epoch_and_why(lightnings_handler, caplog):
    """train.log says when last.ckpt was written and which save point wrote it (break: a message,
    one of its arguments or one of the reasons dropped or changed)."""
    trainer = HandTrainer()
    callback = started(trainer, every_n_train_steps=3)
    with caplog.at_level(logging.INFO, logger="onlstm.train"):
        trainer.global_step = 3
        callback.on_train_batch_end(trainer)
        trainer.global_step = 4
        callback.on_validation_end(trainer, None)
        trainer.global_step = 5
        callback.on_train_epoch_end(trainer, None)
        trainer.global_step, trainer.current_epoch = 6, 1
        callback.on_train_end(trainer, None)
    path = Path("run/checkpoints/last.ckpt")
    assert caplog.messages == [f"saved {path} at step 3, epoch 0 (every 3 steps)",
                               f"saved {path} at step 4, epoch 0 (validation)",
                               f"saved {path} at step 5, epoch 0 (epoch end)",
                               f"saved {path} at step 6, epoch 1 (end of training)"]


def test_a_signal_is_logged_when_it_comes_when_it_is_saved_and_how_to_continue(lightnings_handler, caplog):
    """What the user reads after Ctrl-C or a SIGTERM: that it was received and where the state will
    be saved, the save, how to continue (the signal raised by Lightning before a save point), and
    what a second Ctrl-C does (break: a message or one of its arguments dropped or changed)."""
    path = Path("run/checkpoints/last.ckpt")
    held = (f"{{}} received: saving {path} after the batch or validation in progress, then stopping "
            "(Ctrl-C again stops at once)")
    trainer = HandTrainer(step=0)
    callback = started(trainer)
    trainer.global_step = 7
    with caplog.at_level(logging.INFO, logger="onlstm.train"):
        send(callback, signal.SIGTERM)
        callback.on_train_batch_end(trainer)
    assert caplog.messages == [held.format("SIGTERM"), f"saved {path} at step 7, epoch 0 (SIGTERM received)"]

    caplog.clear()
    trainer = HandTrainer(step=0)
    callback = started(trainer)
    trainer.global_step = 8
    with caplog.at_level(logging.INFO, logger="onlstm.train"):
        send(callback, signal.SIGINT)
        callback.on_exception(trainer, None, SIGTERMException())
        with pytest.raises(KeyboardInterrupt):
            callback._on_signal(signal.SIGINT, None)
    assert caplog.messages == [
        held.format("SIGINT"), f"saved {path} at step 8, epoch 0 (SIGINT received)",
        f"stopped by SIGINT at step 8; continue with ckpt_path={path} (or resume=true in the same folder)",
        f"second Ctrl-C: stopping at once; {path} is the one saved before"]


def test_without_lightnings_handler_a_signal_stops_the_run_the_same_way(lightnings_handler):
    """Outside the main thread no handler is installed; a stop (another rank's signal) still saves
    and then raises SIGTERMException, as Lightning's loops would."""
    trainer = HandTrainer(step=0, world_size=2, other_rank_signalled=True)
    signal.signal(signal.SIGTERM, _lightnings_sigterm_handler)
    callback = LastCheckpoint("run/checkpoints")
    worker = threading.Thread(target=callback.on_train_start, args=(trainer, None))
    worker.start()
    worker.join()
    assert signal.getsignal(signal.SIGTERM) != callback._on_signal  # nothing installed from that thread
    trainer.global_step = 3
    with pytest.raises(SIGTERMException):
        callback.on_train_batch_end(trainer)
    assert trainer.saved_steps() == [3]


def test_after_an_exception_only_a_signalled_stop_outside_a_validation_is_saved(lightnings_handler):
    """An error (no signal) or a second Ctrl-C leave the last saved state alone: the state in the
    middle of a batch is not one to resume from; a stop by a signal that Lightning raised before a
    save point saves the step reached, unless it stopped inside a validation."""
    trainer = HandTrainer(step=0)
    callback = started(trainer)
    trainer.global_step = 7
    callback.on_exception(trainer, None, RuntimeError("a bug"))
    assert trainer.saved == []

    for exception, validating, saved in ((KeyboardInterrupt(), False, []), (SIGTERMException(), True, []),
                                         (SIGTERMException(), False, [7])):
        trainer = HandTrainer(step=0)
        callback = started(trainer)
        trainer.global_step = 7
        send(callback, signal.SIGTERM)
        trainer.validating = validating
        callback.on_exception(trainer, None, exception)
        assert trainer.saved_steps() == saved, (exception, validating)


# ----------------------------------------------------------------------------- initial weights
class RecordingTrainer(SimpleNamespace):
    def save_checkpoint(self, path, weights_only=None) -> None:
        self.saved.append((Path(path), weights_only))


def test_initial_weights_are_saved_weights_only_before_a_fresh_run_and_never_on_resume(tmp_path):
    """initial.ckpt in dirpath, weights only, at the start of a fresh fit; a run resumed from a
    checkpoint (ckpt_path set) or already past step 0 writes none, so the untrained control stays
    the weights before the first update (break: `and` into `or`, or weights_only=False)."""
    callback = SaveInitialWeights(str(tmp_path / "checkpoints"))
    fresh = RecordingTrainer(ckpt_path=None, global_step=0, saved=[])
    callback.on_fit_start(fresh, None)
    assert fresh.saved == [(tmp_path / "checkpoints" / "initial.ckpt", True)]
    for ckpt_path, step in (("run/checkpoints/last.ckpt", 0), ("run/checkpoints/last.ckpt", 40), (None, 1)):
        resumed = RecordingTrainer(ckpt_path=ckpt_path, global_step=step, saved=[])
        callback.on_fit_start(resumed, None)
        assert resumed.saved == [], (ckpt_path, step)
