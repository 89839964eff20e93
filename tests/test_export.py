"""onlstm-export (tasks/reports/export_model.py): a trained LM's checkpoint as a model folder that
plain PyTorch loads, with a model card of the run it came from; the folder in place of the
checkpoint in eval.py and onlstm-parse; and each bad input's error."""

from __future__ import annotations

import datetime
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

import train
from eval import evaluate
from onlstm import PretrainedFolderError
from onlstm.checkpoints import CheckpointError, check_checkpoint_path, load_language_model
from tasks.jobs import run_folder
from tasks.language_modeling import LanguageModelingTask
from tasks.reports import export_model, parse_sentences
from tests.helpers import (
    FEW_FILES,
    LM_TINY_RUN,
    LOGIC_TINY_RUN,
    compose_config,
    load_in_fresh_interpreter,
    requires_data,
    run_train,
)

pytestmark = requires_data("ptb/train.txt", "ptb/test.txt")

LM_LIMITS = ["+trainer.limit_val_batches=4", "+trainer.limit_test_batches=6"]
LM_DATA = [o for o in LM_TINY_RUN if o.startswith("task.datamodule.")]  # the test segments train.py used
TOKENS = torch.tensor([[0, 2, 5, 7, 3, 11, 0, 40], [0, 1, 1, 4, 6, 8, 9, 99]]).T  # (time, batch)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny LM trained and tested by ``python train.py`` (once for this module), so that its folder
    is a run folder as Hydra writes it: the folder and the metrics of its done.json."""
    out = tmp_path_factory.mktemp("lm") / "run"
    run_train([*LM_TINY_RUN, *LM_LIMITS, "logger=csv", f"hydra.run.dir={out}"])
    return out, json.loads((out / "done.json").read_text())["metrics"]


def best_checkpoint(run: Path) -> Path:
    (path,) = (run / "checkpoints").glob("epoch_*.ckpt")
    return path


def export(capsys, *argv) -> tuple[int, str, str]:
    code = export_model.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def exported(lm_run, tmp_path_factory) -> Path:
    """The run's best checkpoint exported (the one its test metrics are of)."""
    folder = tmp_path_factory.mktemp("export") / "onlstm-tiny"
    assert export_model.main([str(best_checkpoint(lm_run[0])), str(folder)]) == 0
    return folder


def card_metrics(card: str) -> dict[str, float]:
    """The metric table of a model card, read back as numbers."""
    return {name: float(value.replace(",", "")) for name, value in re.findall(r"^\| ([a-z]+/[a-z_0-9]+) \| ([-0-9.,e+]+) \|$", card, re.M)}


def log_probs(model) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS).logits.log_softmax(-1)


# ----------------------------------------------------------------------------- the folder
def test_the_folder_loads_without_lightning_or_hydra_and_matches_the_checkpoint(lm_run, exported, tmp_path):
    """In a fresh interpreter that imports only onlstm, from_pretrained gives the checkpoint's
    log-probabilities bit for bit (break: export the initial weights instead of the state dict's)."""
    checkpoint = load_language_model(best_checkpoint(lm_run[0]))
    printed = load_in_fresh_interpreter(exported, TOKENS, log_probs(checkpoint.model), tmp_path)
    assert printed == f"ok 10000 {checkpoint.vocab[:2]}"  # PTB's vocabulary, in the checkpoint's order
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "model.safetensors", "vocab.txt"]


def test_the_card_of_the_best_checkpoint_carries_recipe_steps_metrics_and_commit(lm_run, exported):
    """Overrides of the run, the checkpoint's optimizer steps, the validation that made it the best,
    the run's test of it, and the commit of done.json (break: take the metrics of the last validation
    row, or leave the test metrics out)."""
    run, trained = lm_run
    card = (exported / "README.md").read_text()
    for override in run_folder.read_overrides(run):
        assert f"`{override}`" in card
    steps = torch.load(best_checkpoint(run), weights_only=True)["global_step"]
    assert f"- optimizer steps: {steps:,}\n" in card
    record = json.loads((run / "done.json").read_text())
    assert f"- code commit: `{record['commit']}`" in card
    assert "- data: Penn Treebank, Mikolov's text: ptb/train.txt under the data root, the first 0.01 of its token stream" in card
    metrics = card_metrics(card)
    assert metrics.keys() == {"val/loss", "val/ppl", "test/loss", "test/ppl"}
    assert metrics["test/ppl"] == pytest.approx(trained["test/ppl"], rel=1e-5)
    assert metrics["test/loss"] == pytest.approx(trained["test/loss"], rel=1e-5)
    assert metrics["val/ppl"] == pytest.approx(trained["val/ppl_best"], rel=1e-5)


def test_exporting_last_ckpt_claims_none_of_the_runs_metrics(lm_run, tmp_path, capsys):
    """last.ckpt is not what the run tested: the card gives no metric and names the checkpoint that
    has them (break: claim done.json's metrics for any checkpoint of the run)."""
    run, _ = lm_run
    assert export(capsys, run / "checkpoints" / "last.ckpt", tmp_path / "last")[0] == 0
    card = (tmp_path / "last" / "README.md").read_text()
    assert card_metrics(card) == {}
    best = best_checkpoint(run).name
    assert (f"these weights are checkpoints/last.ckpt; the run's metrics are of other weights (its best checkpoint, "
            f"checkpoints/{best}, which it tested: test/loss, test/ppl)") in card


def test_a_checkpoint_outside_a_run_folder_exports_with_what_it_records(lm_run, tmp_path, capsys):
    loose = shutil.copyfile(best_checkpoint(lm_run[0]), tmp_path / "lm.ckpt")
    code, out, _ = export(capsys, loose, tmp_path / "model")
    assert code == 0 and "wrote" in out
    card = (tmp_path / "model" / "README.md").read_text()
    for line in ("- data: not recorded", "- recipe (overrides of the training run): not recorded", "- code commit: not recorded"):
        assert line in card
    assert re.search(r"- optimizer steps: [0-9]", card)
    assert f"{loose} does not lie in a run folder" in card and card_metrics(card) == {}


# ----------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def logic_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("logic")
    train.train(compose_config([*LOGIC_TINY_RUN, "~logger"], out))
    GlobalHydra.instance().clear()
    return out / "checkpoints" / "last.ckpt"


def test_a_folder_that_is_not_empty_is_left_alone_without_force(lm_run, tmp_path, capsys):
    """Never a silent overwrite: --force writes the model's files and leaves the others
    (break: skip the check)."""
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    (target / "config.json").write_text("{}")
    ckpt = best_checkpoint(lm_run[0])
    code, _, err = export(capsys, ckpt, target)
    assert code == 2
    assert f"{target} is not empty (config.json, notes.txt); give a new or empty folder, or --force" in err
    assert (target / "config.json").read_text() == "{}"
    assert export(capsys, ckpt, target, "--force")[0] == 0
    assert (target / "notes.txt").read_text() == "mine" and json.loads((target / "config.json").read_text())["vocab_size"] == 10000


def unsafe(path: Path) -> Path:
    torch.save({"state_dict": {}, "when": datetime.datetime(2026, 12, 6)}, path)  # an object, not a tensor
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda tmp, logic: tmp / "missing.ckpt", "checkpoint not found: {path}"),
        (lambda tmp, logic: tmp, "{path} is a folder, not a checkpoint file"),
        (lambda tmp, logic: unsafe(tmp / "unsafe.ckpt"), "{path}: refused to load: it holds more than tensors"),
        (lambda tmp, logic: (tmp / "cut.ckpt").write_bytes(b"PK\x03\x04 not a zip") and tmp / "cut.ckpt",
         "{path}: not a readable checkpoint"),
        (lambda tmp, logic: logic, "{path}: not a language-model checkpoint of this project (no 'vocab'): give a checkpoint written by task=lm"),
    ],
    ids=["missing", "folder", "pickled-object", "damaged", "logic-model"],
)
def test_a_checkpoint_that_cannot_be_exported_is_named(make, message, logic_checkpoint, tmp_path, capsys):
    path = make(tmp_path, logic_checkpoint)
    code, out, err = export(capsys, path, tmp_path / "out")
    assert code == 2 and out == ""
    assert err.startswith("onlstm-export: error: ") and message.format(path=path) in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_file_as_the_target_folder_is_named(lm_run, tmp_path, capsys):
    target = tmp_path / "model.txt"
    target.write_text("x")
    code, _, err = export(capsys, best_checkpoint(lm_run[0]), target)
    assert code == 2 and f"{target} is a file; give the folder to write the model into" in err


def test_training_refuses_a_model_folder_as_its_checkpoint(exported):
    with pytest.raises(CheckpointError) as info:
        check_checkpoint_path(str(exported))
    assert str(info.value) == (
        f"ckpt_path={exported} is a folder: training continues from a checkpoint file (<run>/checkpoints/last.ckpt); "
        "an exported model folder is evaluated (eval.py) or parsed with (onlstm-parse), not trained on")


# ----------------------------------------------------------------------------- in place of the checkpoint
def test_eval_lm_of_the_folder_gives_the_checkpoints_test_metrics(make_cfg, lm_run, exported):
    """eval.py task=lm ckpt_path=<folder>: the test perplexity train.py reported for the checkpoint
    the folder was exported from (break: leave the folder's weights out of the module)."""
    _, trained = lm_run
    cfg = make_cfg(["task=lm", f"ckpt_path={exported}", *LM_DATA, "+trainer.limit_test_batches=6", "~logger"],
                   config_name="eval")
    metrics = evaluate(cfg)
    assert metrics["test/ppl"] == pytest.approx(trained["test/ppl"], rel=1e-6)
    assert metrics["test/loss"] == pytest.approx(trained["test/loss"], rel=1e-6)
    assert metrics["model/parameters"] == trained["model/parameters"]


def test_run_options_reach_the_model_loaded_from_a_folder_or_its_checkpoint(lm_run, exported):
    """How the loaded model runs is the caller's (eval.py's run config), wherever it is read from."""
    run = {"implementation": "reference", "cuda_graphs": True}
    for path in (exported, best_checkpoint(lm_run[0])):
        model = load_language_model(path, run).model
        assert (model.stack.implementation, model.cuda_graphs) == ("reference", True), path


def test_a_folder_of_another_vocabulary_is_refused_by_the_lm_task(exported):
    loaded = load_language_model(exported)
    with pytest.raises(ValueError, match=r"the model's vocabulary \(10000 words\) differs from this corpus's \(9999 words\)"):
        LanguageModelingTask.from_language_model(loaded, {}, vocab=loaded.vocab[:-1])


@requires_data("treebank/combined")
def test_eval_parsing_of_the_folder_gives_the_checkpoints_numbers(make_cfg, lm_run, exported):
    def parse(path: Path, subdir: str) -> dict:
        cfg = make_cfg(["task=parsing", f"ckpt_path={path}", FEW_FILES, "task.module.n_figures=0", "~logger"],
                       subdir, "eval")
        return evaluate(cfg)

    from_folder, from_checkpoint = parse(exported, "folder"), parse(best_checkpoint(lm_run[0]), "ckpt")
    scores = {k: v for k, v in from_checkpoint.items() if k.startswith(("test/", "dev/"))}
    assert len(scores) > 50 and {k: from_folder[k] for k in scores} == scores


def test_eval_of_a_task_that_is_no_language_model_refuses_the_folder(make_cfg, exported):
    cfg = make_cfg(["task=logic", f"ckpt_path={exported}", "~logger"], config_name="eval")
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(exported))}: a language-model folder, which task=logic cannot evaluate"):
        evaluate(cfg)


def test_eval_names_the_missing_file_of_a_folder(make_cfg, exported, tmp_path):
    broken = shutil.copytree(exported, tmp_path / "broken")
    (broken / "vocab.txt").unlink()
    cfg = make_cfg(["task=lm", f"ckpt_path={broken}", "~logger"], config_name="eval")
    with pytest.raises(PretrainedFolderError, match=rf"{re.escape(str(broken))}: no vocab.txt in the folder"):
        evaluate(cfg)


def test_onlstm_parse_reads_the_folder_as_it_reads_the_checkpoint(lm_run, exported, capsys):
    """The same words, trees and distances from the folder as from its checkpoint."""
    def records(model: Path) -> list[dict]:
        assert parse_sentences.main([str(model), "The cat sat on the mat.", "Stocks fell 3% on Monday.", "--jsonl",
                                     "--distances", "--quiet"]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    from_folder = records(exported)
    assert len(from_folder) == 2 and from_folder[0]["words"] == ["the", "cat", "sat", "on", "the", "mat"]
    assert from_folder == records(best_checkpoint(lm_run[0]))


def test_onlstm_parse_names_the_bad_file_of_a_folder(exported, tmp_path, capsys):
    broken = shutil.copytree(exported, tmp_path / "broken")
    config = json.loads((broken / "config.json").read_text())
    config["n_layer"] = config.pop("n_layers")
    (broken / "config.json").write_text(json.dumps(config))
    assert parse_sentences.main([str(broken), "The cat sat."]) == 2
    err = capsys.readouterr().err
    assert f"onlstm-parse: error: {broken / 'config.json'}: unknown field(s) n_layer" in err
