"""eval.py's work (``tasks.jobs.evaluation.evaluate_checkpoint``) on a logic checkpoint written by
hand (no training): the checkpoint's weights are the ones tested, on the config's data, with the
config's loggers, callbacks, seed and run options; what it hands the Trainer and the trackers;
a rank other than zero of a distributed launch tests nothing."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

import tasks.jobs.evaluation as evaluation
from datamodules.logic_formulas import RELATIONS
from datamodules.propositional_logic import TOKENS
from onlstm import BackboneConfig, RNNLanguageModel
from tasks.jobs.progress_log import ProgressLog
from tasks.logical_inference import LogicalInferenceTask

# the checkpoint's model: sizes no config of eval.py has (its model is the paper's, hidden 1150)
MODEL = {"arch": "onlstm", "emb_size": 4, "hidden_size": 8, "n_layers": 1, "chunk_size": 2, "tie_weights": False}
RELATION_NAMES = list(RELATIONS)

# test0: labels = # # ; test1: labels < < #. A model that always answers "#" gets 2/3 of test0,
# 1/3 of test1 and 3/6 overall.
TEST_FILES = {
    "test0": ["=\ta\ta", "#\ta\tb", "#\tc\td"],
    "test1": ["<\t( a ( and b ) )\ta", "<\ta\t( a ( or b ) )", "#\t( a ( and b ) )\tc"],
}


@pytest.fixture
def logic_checkpoint(tmp_path) -> tuple[Path, int]:
    """A logic checkpoint as train.py writes one (its state_dict and hyper_parameters) whose
    classifier answers "#" whatever the formulas (the last layer's weights zero, its bias 5 on "#"),
    and its number of stored parameters. A module built afresh answers otherwise: only the
    checkpoint's weights give the accuracies above."""
    torch.manual_seed(0)
    module = LogicalInferenceTask(model=MODEL, vocab_size=len(TOKENS), relations=RELATION_NAMES, train_ops=[0, 1],
                                  test_ops=[0, 1], mlp_hidden=4)
    last = module.model.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[RELATION_NAMES.index("#")] = 5.0
    state = module.state_dict()
    path = tmp_path / "logic.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": dict(module.hparams), "pytorch-lightning_version": pl.__version__,
                "epoch": 0, "global_step": 0}, path)
    return path, sum(t.numel() for t in state.values())


def data_dir(root: Path) -> Path:
    folder = root / "logic_data"
    folder.mkdir()
    for name, lines in TEST_FILES.items():
        (folder / name).write_text("".join(line + "\n" for line in lines))
    return folder


def eval_cfg(make_cfg, checkpoint: Path, root: Path, *extra: str):
    return make_cfg(["task=logic", f"ckpt_path={checkpoint}", f"task.datamodule.data_dir={data_dir(root)}",
                     "task.datamodule.train_ops=[0,1]", "task.datamodule.test_ops=[0,1]", "logger=csv",
                     "trainer.enable_progress_bar=false", *extra], config_name="eval")


def test_the_checkpoints_weights_are_tested_on_the_configs_data_with_its_loggers(make_cfg, logic_checkpoint, tmp_path,
                                                                                 caplog):
    """The accuracies of the checkpoint's classifier (always "#") on the config's test files, counted
    by hand; the parameter count of the checkpoint's model (not the config's); the metrics in the
    CSV log of the config's logger; the progress log's end line counting the pairs (breaks seen
    failing: trainer.test without ckpt_path (a fresh module is tested), the loggers not handed to
    the Trainer (no csv/metrics.csv), the callbacks not handed to it (no progress line))."""
    path, parameters = logic_checkpoint
    cfg = eval_cfg(make_cfg, path, tmp_path)
    with caplog.at_level(logging.INFO, logger="onlstm.train"):
        metrics = evaluation.evaluate_checkpoint(cfg)
    assert metrics["test/acc"] == pytest.approx(3 / 6)
    assert metrics["test/acc_ops0"] == pytest.approx(2 / 3)
    assert metrics["test/acc_ops1"] == pytest.approx(1 / 3)
    assert metrics["model/parameters"] == parameters
    rows = list(csv.DictReader(open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv")))
    assert float(rows[-1]["test/acc"]) == pytest.approx(3 / 6)
    assert "test done: 6 pairs in" in caplog.text


class FakeTrainer:
    """What evaluate_checkpoint asks of a Trainer, recorded: its world (size, rank), its loggers,
    the test call, and the metrics the test would have logged."""

    def __init__(self, world_size: int = 1, global_rank: int = 0):
        self.world_size, self.global_rank, self.loggers = world_size, global_rank, []
        self.callback_metrics = {"test/acc": torch.tensor(0.25)}
        self.tested = []

    def test(self, module, **kwargs):
        self.tested.append((module, kwargs))


@pytest.fixture
def fake_trainer(monkeypatch):
    """evaluate_checkpoint's Trainer replaced by a FakeTrainer; what build_trainer and the other
    helpers were handed, recorded."""
    seen = SimpleNamespace(trainer=FakeTrainer(), build=[], module=[], hparams=[])

    def build_trainer(cfg, task, callbacks, loggers):
        seen.build.append((cfg, task, callbacks, loggers))
        return seen.trainer

    real_module = evaluation.evaluation_module

    def evaluation_module(*args, **kwargs):
        seen.module.append(real_module(*args, **kwargs))
        return seen.module[-1]

    monkeypatch.setattr(evaluation, "build_trainer", build_trainer)
    monkeypatch.setattr(evaluation, "evaluation_module", evaluation_module)
    monkeypatch.setattr(evaluation, "log_hparams_with_final_metrics",
                        lambda cfg, trainer, metrics, model=None: seen.hparams.append((cfg, trainer, dict(metrics), model)))
    return seen


def test_what_the_trainer_and_the_trackers_are_handed(make_cfg, logic_checkpoint, tmp_path, fake_trainer, caplog,
                                                      monkeypatch):
    """The Trainer is built from the config with the progress-log callback and the config's loggers;
    it tests the module built from the checkpoint, on the config's datamodule, loading the
    checkpoint's weights without unpickling code; the module runs as ``run`` says; the evaluation
    is seeded with ``seed`` (DataLoader workers too); the log names the checkpoint, the task and
    the checkpoint's model; the trackers get every final metric and the checkpoint's model, not
    ``cfg.model`` (breaks seen failing: run_options not handed to the module, model=backbone
    dropped from log_hparams_with_final_metrics, the "evaluating" line's arguments dropped,
    seed_everything(workers=False), ckpt_path always None)."""
    path, parameters = logic_checkpoint
    cfg = eval_cfg(make_cfg, path, tmp_path, "run.implementation=reference", "seed=4321")
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")  # what seed_everything() falls back to without a seed
    monkeypatch.setenv("PL_SEED_WORKERS", "0")
    with caplog.at_level(logging.INFO, logger="onlstm.train"):
        metrics = evaluation.evaluate_checkpoint(cfg)
    assert metrics == {"model/parameters": parameters, "test/acc": 0.25}

    ((built_cfg, task, callbacks, loggers),) = fake_trainer.build
    assert built_cfg is cfg and task is cfg.task
    assert [type(c) for c in callbacks] == [ProgressLog]
    assert [type(logger).__name__ for logger in loggers] == ["AppendingCSVLogger"]

    (module,) = fake_trainer.module
    ((tested, kwargs),) = fake_trainer.trainer.tested
    assert tested is module and isinstance(module, LogicalInferenceTask)
    assert module.model.stack.implementation == "reference"
    assert kwargs["ckpt_path"] == str(path) and kwargs["weights_only"] is True
    assert kwargs["datamodule"].data_dir == tmp_path / "logic_data"

    assert torch.initial_seed() == 4321
    assert (os.environ["PL_GLOBAL_SEED"], os.environ["PL_SEED_WORKERS"]) == ("4321", "1")
    assert f"evaluating {path} with task=logic: {BackboneConfig(**MODEL)}" in [r.getMessage() for r in caplog.records]

    ((hp_cfg, hp_trainer, hp_metrics, hp_model),) = fake_trainer.hparams
    assert hp_cfg is cfg and hp_trainer is fake_trainer.trainer
    assert hp_metrics == metrics and hp_model == MODEL


def test_a_rank_other_than_zero_tests_nothing_and_returns_the_parameter_count(make_cfg, logic_checkpoint, tmp_path,
                                                                              fake_trainer):
    """Under DDP the logic test runs on rank zero alone (its metrics are not exact across ranks): the
    other ranks return the parameter count and test nothing (breaks seen failing:
    ``trainer is None`` -> ``is not None``, trainer_for_test handed None for the config)."""
    path, parameters = logic_checkpoint
    fake_trainer.trainer = FakeTrainer(world_size=2, global_rank=1)
    metrics = evaluation.evaluate_checkpoint(eval_cfg(make_cfg, path, tmp_path))
    assert metrics == {"model/parameters": parameters}
    assert fake_trainer.trainer.tested == [] and fake_trainer.hparams == []


def test_eval_without_a_checkpoint_says_what_to_set(make_cfg):
    """ckpt_path left unset (eval.yaml's ???) is refused before anything is read, with what to set
    and the value it got (breaks seen failing: the ValueError raised without its message,
    ``path in (None, "best", "last")`` -> ``not in``)."""
    cfg = make_cfg(["task=logic", "~logger"], config_name="eval")
    with pytest.raises(ValueError, match=r"^eval.py evaluates a checkpoint file or an exported model folder: set "
                                         r"ckpt_path=/path/to/<run>/checkpoints/<name>.ckpt \(got ckpt_path=None\)$"):
        evaluation.evaluate_checkpoint(cfg)


@pytest.mark.parametrize("form", ["checkpoint", "model folder"])
def test_a_task_that_loads_its_language_model_itself_gets_no_checkpoint_to_restore(make_cfg, tmp_path, fake_trainer,
                                                                                  form):
    """syneval (as parsing) builds its module around the LM it loads from ckpt_path itself
    (``evaluates_checkpoint``), from a checkpoint or an onlstm-export folder: trainer.test restores
    nothing into it, where Lightning's restore of an LM checkpoint into the parsing module fails on
    its keys, and a folder is no checkpoint file (breaks seen failing: ``evaluates_checkpoint or
    is_model_folder(path)`` -> ``and``, the key misspelt, the folder read as a checkpoint file
    (``None if is_model_folder(path) and False else read_checkpoint(path)``))."""
    torch.manual_seed(0)
    words = ["<eos>", "<unk>", "the", "cat"]
    lm = RNNLanguageModel(len(words), BackboneConfig(**MODEL))
    if form == "checkpoint":
        path = tmp_path / "lm.ckpt"
        torch.save({"hyper_parameters": {"model": dict(MODEL)}, "vocab": words,
                    "state_dict": {f"model.{k}": v for k, v in lm.state_dict().items()}}, path)
    else:
        path = tmp_path / "lm_folder"
        lm.save_pretrained(path, vocab=words)
    (tmp_path / "data" / "syneval").mkdir(parents=True)
    cfg = make_cfg(["task=syneval", f"ckpt_path={path}", f"paths.data_dir={tmp_path / 'data'}", "~logger"],
                   config_name="eval")
    evaluation.evaluate_checkpoint(cfg)
    ((module, kwargs),) = fake_trainer.trainer.tested
    assert module.checkpoint_path == str(path) and module.vocab == words  # the LM it loaded
    torch.testing.assert_close(module.model.decoder.weight, lm.decoder.weight, rtol=0, atol=0)
    assert kwargs["ckpt_path"] is None
