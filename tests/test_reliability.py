"""Reliability: bad input fails clearly without losing anything; faults; exact resume; safe loading.

Each bad-input test is one row of the table in docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

import train as entry
from eval import evaluate
from datamodules.files import DataError, read_lines, require_file
from datamodules.text_corpus import TextCorpusDataModule, load_corpus
from onlstm.checkpoints import CheckpointError, load_language_model, read_checkpoint
from tests.helpers import ROOT, TINY_MODEL, TouchPayload, cli_env, requires_data

TINY_LM = [
    "task=lm",
    *TINY_MODEL,
    "task.datamodule.train_fraction=0.01",
    "task.datamodule.bptt=20",
    "trainer.max_epochs=1",
    "+trainer.limit_val_batches=3",
    "trainer.enable_progress_bar=false",
    "callbacks.model_summary=null",
    "test=false",
]


def _corpus(tmp_path: Path, train: bytes = b"a b c\nb c a\n", valid: bytes = b"a b\n", test: bytes = b"c a\n") -> Path:
    folder = tmp_path / "data" / "ptb"
    folder.mkdir(parents=True)
    for name, content in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.txt").write_bytes(content)
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- bad input
def test_missing_data_root_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"corpus folder not found: .*nowhere/ptb .*ONLSTM_DATA_DIR"):
        TextCorpusDataModule(str(tmp_path / "nowhere")).vocab


def test_missing_split_file_names_the_file(tmp_path):
    folder = _corpus(tmp_path)
    (folder / "valid.txt").unlink()
    with pytest.raises(DataError, match=r"corpus file not found: .*ptb/valid.txt \(the folder .*ptb exists but has no valid.txt\)$"):
        load_corpus(folder)


def test_missing_file_in_a_missing_folder_points_at_the_data_root(tmp_path):
    with pytest.raises(DataError, match=r"corpus file not found: .*nowhere/valid.txt \(set the data root .*ONLSTM_DATA_DIR"):
        require_file(tmp_path / "nowhere" / "valid.txt", "corpus")


def test_empty_corpus_is_refused(tmp_path):
    folder = _corpus(tmp_path, train=b"\n\n")
    with pytest.raises(DataError, match=r"train.txt: the corpus file is empty"):
        load_corpus(folder)


def test_a_word_outside_the_training_vocabulary_without_unk_names_file_line_and_word(tmp_path):
    folder = _corpus(tmp_path, test=b"c a\na zebra\n")
    with pytest.raises(DataError) as refused:
        load_corpus(folder)
    assert str(refused.value) == (f"{folder / 'test.txt'}:2: word 'zebra' is not in the training vocabulary and the "
                                  "vocabulary has no <unk>; map rare words to <unk> in the training file")


def test_with_unk_in_training_an_unknown_word_reads_as_unk(tmp_path):
    splits = load_corpus(_corpus(tmp_path, train=b"a b <unk>\n", test=b"a zebra\n"))
    unk = splits.vocab.encode(["<unk>"])[0]
    assert splits.test.tolist() == [splits.vocab.encode(["a"])[0], unk, splits.vocab.encode(["<eos>"])[0]]


def test_a_split_too_short_for_its_batch_columns_names_the_file_and_the_setting(tmp_path):
    folder = _corpus(tmp_path, valid=b"a b\n")  # 3 tokens with <eos>: fewer than 2 rows of 10 columns
    module = TextCorpusDataModule(str(tmp_path / "data"), batch_size=2, eval_batch_size=10, train_fraction=0.5)
    with pytest.raises(DataError) as refused:
        module.val_dataloader()
    assert str(refused.value) == (f"{folder / 'valid.txt'}: 3 tokens are too few for 10 batch columns of at least "
                                  "2 tokens each; lower task.datamodule.eval_batch_size")
    # training on half of an 8-token stream (4 tokens) in 1 column of 4: enough; in 2 columns of 2,
    # not: variable-length training segments need 3 rows (AWD-LSTM stops two rows before the end)
    module.batch_size = 1
    assert len(list(module.train_dataloader())) > 0
    module.batch_size = 2
    with pytest.raises(DataError) as refused:
        module.train_dataloader()
    assert str(refused.value) == (f"{folder / 'train.txt'}: 4 tokens are too few for 2 batch columns of at least "
                                  "3 tokens each; lower task.datamodule.batch_size or raise "
                                  "task.datamodule.train_fraction (0.5)")


def test_non_utf8_byte_names_file_line_and_column(tmp_path):
    folder = _corpus(tmp_path, train=b"a b c\nb \xff a\n")
    with pytest.raises(DataError, match=r"train.txt:2: not valid UTF-8 \(byte 0xff at column 3\); re-encode the file as UTF-8$"):
        load_corpus(folder)


def test_lines_are_read_whole_but_for_their_line_ending(tmp_path):
    """Windows or Unix line endings, a last line without one: only the ending goes, every other
    character stays (a trailing space, a last letter that happens to be an X)."""
    path = tmp_path / "lines.txt"
    path.write_bytes(b"  ( [MAX 2 ) \r\nlast X\n\nno newline X")
    assert list(read_lines(path, "test")) == [(1, "  ( [MAX 2 ) "), (2, "last X"), (3, ""), (4, "no newline X")]


def test_unknown_config_key_on_the_command_line_prints_the_key_and_its_schema():
    """Guards what a user sees for a misspelt override (``python train.py model.hiden_size=3``):
    exit status 1 and Hydra's message naming the key and the schema it is not in (struct mode
    alone would say "is not in struct"), before anything is built."""
    proc = subprocess.run([sys.executable, "train.py", "model.hiden_size=3"], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1
    assert "Could not override 'model.hiden_size'." in proc.stderr
    assert "Key 'hiden_size' not in 'BackboneConfig'" in proc.stderr


@pytest.mark.parametrize(
    "yaml,message",
    [
        ("model:\n  hiden_size: 3\n", "Key 'hiden_size' not in 'BackboneConfig'"),
        ("task:\n  module:\n    lrr: 3.0\n", "Key 'lrr' not in 'LanguageModelingSchema'"),
        ("task:\n  datamodule:\n    bpt: 35\n", "Key 'bpt' not in 'TextCorpusDataSchema'"),
    ],
    ids=["model", "task.module", "task.datamodule"],
)
def test_typo_inside_a_config_file_names_the_file_the_key_and_the_schema(make_cfg, tmp_path, yaml, message):
    """Guards the typed schemas: a key misspelt inside a YAML file (an experiment, conf/local)
    is merged silently by Hydra's struct mode, which only checks command-line overrides; with
    the schemas composition fails, naming the file and the key."""
    folder = tmp_path / "extra" / "experiment"
    folder.mkdir(parents=True)
    (folder / "typo.yaml").write_text("# @package _global_\n" + yaml)
    with pytest.raises(ConfigCompositionException) as info:
        make_cfg([f"hydra.searchpath=[file://{tmp_path / 'extra'}]", "experiment=typo"])
    assert "In 'experiment/typo'" in str(info.value) and message in str(info.value)


def test_wrong_config_type_names_the_key(make_cfg):
    """Guards the schemas' types: a string for an int field fails at composition, naming the key."""
    with pytest.raises(ConfigCompositionException) as info:
        make_cfg(["model.hidden_size=large"])
    cause = str(info.value.__cause__)
    assert "Value 'large' of type 'str' could not be converted to Integer" in cause
    assert "full_key: model.hidden_size" in cause


def test_chunk_size_that_does_not_divide_the_layers(make_cfg):
    cfg = make_cfg([*TINY_LM, "model.chunk_size=5"])
    with pytest.raises(ValueError, match=r"model.chunk_size=5 must divide every layer size \[32, 16\]"):
        entry.train(cfg)


def test_unknown_implementation_names_the_key_and_the_choices(make_cfg):
    cfg = make_cfg([*TINY_LM, "run.implementation=cudnn"])
    with pytest.raises(ValueError, match=r"run.implementation must be one of \[.*'fused_cpu'.*\], got 'cudnn'"):
        entry.train(cfg)


def test_missing_checkpoint_path(make_cfg, tmp_path):
    cfg = make_cfg([*TINY_LM, f"ckpt_path={tmp_path / 'missing.ckpt'}"])
    with pytest.raises(FileNotFoundError, match="missing.ckpt does not exist"):
        entry.train(cfg)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real (tiny) LM checkpoint trained on a PTB slice."""
    from tests.helpers import compose_config

    out = tmp_path_factory.mktemp("tiny_lm")
    cfg = compose_config([*TINY_LM, "+trainer.limit_train_batches=3"], out)
    entry.train(cfg)
    return out / "checkpoints" / "last.ckpt"


@requires_data("ptb/train.txt")
def test_truncated_checkpoint_is_a_clear_error(tiny_checkpoint, tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="broken.ckpt: not a readable checkpoint"):
        read_checkpoint(broken)


class Payload:
    """Unpickling this would run code (here: a harmless marker) - the official code's risk."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, evil)
    with pytest.raises(CheckpointError, match="refused to load"):
        read_checkpoint(evil)


@requires_data("ptb/train.txt")
@pytest.mark.parametrize(
    "overrides,config_name",
    [(TINY_LM, "config"), ([*TINY_LM, "train=false", "test=true"], "config"), (["task=lm"], "eval"),
     (["task=syneval"], "eval")],
    ids=["resume_fit", "test_only", "eval_lm", "eval_syneval"],
)
def test_entry_points_refuse_a_checkpoint_with_pickled_code_before_running_it(tiny_checkpoint, make_cfg, tmp_path,
                                                                              overrides, config_name):
    """Guards the paths a user takes with ckpt_path: resuming a fit, testing a checkpoint
    (train=false, eval.py task=lm) and scoring it (eval.py task=syneval): a checkpoint that also
    carries a pickled object is refused with the file named and the reason, and its code never runs
    (no marker file)."""
    marker = tmp_path / "code_ran"
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    checkpoint["payload"] = TouchPayload(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(checkpoint, evil)
    cfg = make_cfg([*overrides, f"ckpt_path={evil}"], config_name=config_name)
    with pytest.raises(CheckpointError, match=r"evil.ckpt: refused to load: it holds more than tensors"):
        (entry.train if config_name == "config" else evaluate)(cfg)
    assert not marker.exists()


@requires_data("ptb/train.txt")
def test_checkpoint_of_another_model_shape_is_refused(tiny_checkpoint, tmp_path):
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["model"]["hidden_size"] = 64
    other = tmp_path / "other_shape.ckpt"
    torch.save(checkpoint, other)
    with pytest.raises(CheckpointError, match="weights do not fit the model"):
        load_language_model(other)


@requires_data("ptb/train.txt")
def test_resuming_on_another_vocabulary_is_refused(tiny_checkpoint, make_cfg, tmp_path):
    _corpus(tmp_path)
    cfg = make_cfg([*TINY_LM, f"paths.data_dir={tmp_path / 'data'}", "task.datamodule.train_fraction=1.0",
                    "task.datamodule.batch_size=1", "task.datamodule.eval_batch_size=1", f"ckpt_path={tiny_checkpoint}"])
    with pytest.raises(ValueError, match="vocabulary .* differs"):
        entry.train(cfg)


@requires_data("ptb/train.txt")
def test_a_run_never_trains_into_another_runs_folder(tiny_checkpoint, make_cfg):
    cfg = make_cfg(TINY_LM)
    target = Path(cfg.paths.output_dir) / "checkpoints"
    target.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, target / "last.ckpt")
    before = _sha(target / "last.ckpt")
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        entry.train(cfg)
    assert _sha(target / "last.ckpt") == before


# ----------------------------------------------------------------------------- faults
@requires_data("ptb/train.txt")
def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(make_cfg):
    cfg = make_cfg([*TINY_LM, "+trainer.limit_train_batches=8", "callbacks.last_checkpoint.every_n_train_steps=2",
                    "+callbacks.poison._target_=tests.fault_injection.PoisonLossAtStep", "+callbacks.poison.step=4"])
    with pytest.raises(FloatingPointError, match="non-finite training loss .* at global step 4"):
        entry.train(cfg)
    last = Path(cfg.paths.output_dir, "checkpoints", "last.ckpt")
    checkpoint = read_checkpoint(last)
    assert checkpoint["global_step"] == 4
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def _train_subprocess(output_dir: Path, extra: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "train.py"), *TINY_LM, "model.wdrop=0.2", "model.dropout=0.3",
               "trainer.max_epochs=2", "+trainer.limit_train_batches=6",
               "callbacks.last_checkpoint.every_n_train_steps=2", "~logger", f"hydra.run.dir={output_dir}", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@requires_data("ptb/train.txt")
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    full = _train_subprocess(tmp_path / "full", [])
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _train_subprocess(tmp_path / "killed", ["+callbacks.kill._target_=tests.fault_injection.KillAtStep",
                                                     "+callbacks.kill.step=9"])
    assert killed.returncode == -9  # SIGKILL: no cleanup ran
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == 8  # mid-epoch 2 (6 batches per epoch)
    resumed = _train_subprocess(tmp_path / "resumed", [f"ckpt_path={last}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = read_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 12
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)


# validation every 3 batches, 6 batches an epoch, 2 epochs: validations end steps 3, 6, 9, 12; no
# step-based saves, so a last.ckpt at step 8 can only come from the signal
SIGNAL_RUN = [*TINY_LM, "model.wdrop=0.2", "model.dropout=0.3", "trainer.max_epochs=2", "+trainer.limit_train_batches=6",
              "+trainer.val_check_interval=3", "~logger"]


def _signal_command(output_dir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *SIGNAL_RUN, f"hydra.run.dir={output_dir}", *extra]


def _checkpoint_state(path: Path) -> tuple[int, dict, list]:
    checkpoint = read_checkpoint(path)
    [history] = [v["history"] for k, v in checkpoint["callbacks"].items() if k.startswith("NTASGDSwitch")]
    return checkpoint["global_step"], checkpoint["state_dict"], history


@pytest.fixture(scope="module")
def uninterrupted_signal_run(tmp_path_factory) -> tuple[int, dict, list]:
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = subprocess.run(_signal_command(out, []), cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _checkpoint_state(out / "checkpoints" / "last.ckpt")


@requires_data("ptb/train.txt")
def test_sigterm_in_process_saves_last_ckpt_then_resume_equals_an_uninterrupted_run(make_cfg):
    """The fast version of the test below, in this process: a SIGTERM the run sends itself after
    step 8 stops it with SystemExit(143) and last.ckpt at step 8; resuming from it ends as the
    uninterrupted run does (weights and validation history). Went red (``assert 6 == 8``: the
    step-6 validation's last.ckpt was all there was) when the signal went straight to Lightning's
    handler and nothing was saved on it, which is what Lightning alone does."""
    full = make_cfg(SIGNAL_RUN, subdir="full")
    entry.train(full)
    stopped = make_cfg([*SIGNAL_RUN, "+callbacks.kill._target_=tests.fault_injection.SignalSelfAtStep",
                        "+callbacks.kill.step=8"], subdir="stopped")
    with pytest.raises(SystemExit) as info:
        entry.train(stopped)
    assert info.value.code == 128 + signal.SIGTERM
    last = Path(stopped.paths.output_dir, "checkpoints", "last.ckpt")
    assert read_checkpoint(last)["global_step"] == 8
    resumed = make_cfg([*SIGNAL_RUN, f"ckpt_path={last}"], subdir="resumed")
    entry.train(resumed)
    full_step, full_weights, full_history = _checkpoint_state(Path(full.paths.output_dir, "checkpoints", "last.ckpt"))
    got_step, got_weights, got_history = _checkpoint_state(Path(resumed.paths.output_dir, "checkpoints", "last.ckpt"))
    assert got_step == full_step == 12 and got_history == full_history and len(full_history) == 4
    for key, value in full_weights.items():
        torch.testing.assert_close(got_weights[key], value, rtol=0, atol=0, msg=key)


@requires_data("ptb/train.txt")
@pytest.mark.parametrize(
    "sent,during,step",
    [
        pytest.param(signal.SIGTERM, "train", 8, marks=pytest.mark.slow),
        pytest.param(signal.SIGINT, "train", 8, marks=pytest.mark.slow),
        pytest.param(signal.SIGTERM, "validation", 9, marks=pytest.mark.slow),
    ],
    ids=["sigterm_mid_epoch", "ctrl_c_mid_epoch", "sigterm_mid_validation"],
)
def test_signal_saves_last_ckpt_and_resuming_equals_an_uninterrupted_run(uninterrupted_signal_run, tmp_path, sent, during,
                                                                          step):
    """Guards what a preempted or stopped run keeps: a real SIGTERM (or Ctrl-C) sent to
    ``python train.py`` mid-epoch writes checkpoints/last.ckpt at the end of the batch in progress
    (held until the end of the validation when one is running), exits with 128 + the signal's
    number, and resuming from that last.ckpt ends with exactly the weights and the validation
    history (NT-ASGD's) of an uninterrupted run. The validation case went red (NT-ASGD history
    differed at index 2) when the signal went to Lightning at once and last.ckpt was written where
    Lightning stopped, inside the validation: the resumed run re-ran it from partial sums."""
    marker = tmp_path / "waiting"
    stopped_dir = tmp_path / "stopped"
    wait = ["+callbacks.wait._target_=tests.fault_injection.WaitForSignalAtStep", f"+callbacks.wait.step={step}",
            f"+callbacks.wait.marker={marker}", f"+callbacks.wait.during={during}"]
    proc = subprocess.Popen(_signal_command(stopped_dir, wait), cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the run never reached the step where it waits for the signal"
    os.kill(proc.pid, sent)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + sent, output[-3000:]
    log = (stopped_dir / "train.log").read_text()
    assert f"{sent.name} received: saving" in log and f"run stopped by {sent.name}" in log
    assert not (stopped_dir / "done.json").exists()  # an unfinished run: resume=true continues it
    last = stopped_dir / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == step

    resumed_dir = tmp_path / "resumed"
    resumed = subprocess.run(_signal_command(resumed_dir, [f"ckpt_path={last}"]), cwd=ROOT, env=cli_env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full_step, full_weights, full_history = uninterrupted_signal_run
    got_step, got_weights, got_history = _checkpoint_state(resumed_dir / "checkpoints" / "last.ckpt")
    assert got_step == full_step == 12
    assert got_history == full_history and len(full_history) == 4  # no validation skipped or repeated
    for key, value in full_weights.items():
        torch.testing.assert_close(got_weights[key], value, rtol=0, atol=0, msg=key)
