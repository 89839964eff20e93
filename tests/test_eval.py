"""eval.py: a checkpoint evaluated on each task (lm, logic here; parsing and syneval in their own
test files), the model taken from the checkpoint, the run options from the config, and
checkpoints written before the run options left the model config."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tomllib
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

import tasks.reports.parse_sentences as parse_sentences
import train
from eval import evaluate
from tasks.jobs import run_folder
from onlstm.checkpoints import CheckpointError, load_language_model, read_checkpoint
from tasks.jobs.task_from_config import build_module
from tasks.language_modeling import LanguageModelingTask
from tests.helpers import LM_TINY_RUN, LOGIC_TINY_RUN, ROOT, compose_config, requires_data, run_eval

pytestmark = requires_data("ptb/train.txt", "ptb/test.txt", "logic/train0")

LM_LIMITS = ["+trainer.limit_val_batches=4", "+trainer.limit_test_batches=6"]
# the data side is the config's, as in training (bptt sets the test segments: 6 batches of 20 tokens)
LM_DATA = [o for o in LM_TINY_RUN if o.startswith("task.datamodule.")]


def best_checkpoint(run_dir: Path) -> Path:
    (path,) = (run_dir / "checkpoints").glob("epoch_*.ckpt")
    return path


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny LM trained and tested by train.py (once for this module): its folder and metrics."""
    out = tmp_path_factory.mktemp("lm")
    metrics = train.train(compose_config([*LM_TINY_RUN, *LM_LIMITS, "~logger"], out))
    GlobalHydra.instance().clear()
    return out, metrics


@pytest.fixture(scope="module")
def logic_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("logic")
    metrics = train.train(compose_config([*LOGIC_TINY_RUN, "~logger"], out))
    GlobalHydra.instance().clear()
    return out, metrics


def old_form(checkpoint: Path, dest: Path) -> Path:
    """``checkpoint`` as written before the run options left the model config: its
    hyper_parameters["model"] also carries implementation and cuda_graphs."""
    stored = torch.load(checkpoint, weights_only=True)
    stored["hyper_parameters"]["model"].update(implementation="fused_aten", cuda_graphs=False)
    torch.save(stored, dest)
    return dest


# ----------------------------------------------------------------------------- each task
def test_lm_test_perplexity_of_a_checkpoint_needs_no_model_overrides(make_cfg, lm_run):
    """`python eval.py task=lm ckpt_path=...` gives the test perplexity train.py reported for the
    same checkpoint, without the tiny sizes on the command line: the model is the checkpoint's
    (break: build the module from cfg.model in build_evaluation_module: the weights do not fit)."""
    out, trained = lm_run
    cfg = make_cfg(["task=lm", f"ckpt_path={best_checkpoint(out)}", *LM_DATA, "+trainer.limit_test_batches=6",
                    "~logger"], config_name="eval")
    assert cfg.model.hidden_size == 1150  # the config's model (the paper's) is not the checkpoint's (32)
    metrics = evaluate(cfg)
    assert metrics["test/ppl"] == pytest.approx(trained["test/ppl"], rel=1e-6)
    assert metrics["model/parameters"] == trained["model/parameters"]


def test_logic_test_accuracy_per_operator_count(make_cfg, logic_run):
    """`python eval.py task=logic ckpt_path=...`: the accuracies per number of operators train.py
    reported for its best checkpoint; the classifier's sizes come from the checkpoint."""
    out, trained = logic_run
    data = [o for o in LOGIC_TINY_RUN if o.startswith("task.datamodule.")]
    cfg = make_cfg(["task=logic", f"ckpt_path={best_checkpoint(out)}", *data, "~logger"], config_name="eval")
    metrics = evaluate(cfg)
    for key in ("test/acc", "test/acc_ops0", "test/acc_ops1"):
        assert metrics[key] == pytest.approx(trained[key]), key


def test_a_checkpoint_of_another_task_is_refused_with_the_task_to_use(make_cfg, logic_run):
    cfg = make_cfg(["task=lm", f"ckpt_path={best_checkpoint(logic_run[0])}", "~logger"], config_name="eval")
    with pytest.raises(CheckpointError, match=r"epoch_000.ckpt: not a checkpoint of task=lm .*task that trained it"):
        evaluate(cfg)


def test_eval_py_from_the_command_line_writes_a_finished_run(lm_run, tmp_path):
    """The real entry point (Hydra's main, conf/eval.yaml) on a checkpoint: metrics logged, the
    run folder marked finished (done.json), which resume=true then skips."""
    run_dir = tmp_path / "eval_run"
    args = ["task=lm", f"ckpt_path={best_checkpoint(lm_run[0])}", "+trainer.limit_test_batches=2",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", "resume=true"]
    proc = run_eval(args)
    done = json.loads((run_dir / run_folder.DONE).read_text())
    assert done["metrics"]["test/ppl"] > 1 and "test/ppl" in (run_dir / "csv" / "metrics.csv").read_text()
    again = run_eval(args)
    assert "already holds a finished run" in again.stderr + again.stdout, proc.stderr[-2000:]


def test_resume_skips_a_finished_evaluation(make_cfg, lm_run, tmp_path):
    """resume=true (the evidence sweeps) on an evaluation folder with done.json returns its metrics
    and evaluates nothing: the checkpoint may be gone by then."""
    checkpoint = shutil.copy(best_checkpoint(lm_run[0]), tmp_path / "copy.ckpt")
    overrides = ["task=lm", f"ckpt_path={checkpoint}", "+trainer.limit_test_batches=2", "~logger", "resume=true"]
    first = evaluate(make_cfg(overrides, subdir="job", config_name="eval"))
    Path(checkpoint).unlink()
    assert evaluate(make_cfg(overrides, subdir="job", config_name="eval")) == pytest.approx(first)


# ----------------------------------------------------------------------------- run options
def test_checkpoints_store_the_model_not_how_it_ran(lm_run):
    stored = read_checkpoint(best_checkpoint(lm_run[0]))["hyper_parameters"]
    assert "run" not in stored
    assert not {"implementation", "cuda_graphs"} & set(stored["model"])
    assert stored["model"]["hidden_size"] == 32


def test_run_options_reach_the_trained_model(make_cfg):
    """run.implementation is handed to the module beside the model config (break: drop run= in
    runner.build_module: the stack stays "fused")."""
    cfg = make_cfg([*LM_TINY_RUN, "run.implementation=reference"])
    module = build_module(cfg, instantiate(cfg.task.datamodule, _convert_="all"))
    assert module.model.stack.implementation == "reference"


def test_logic_refuses_cuda_graphs_naming_the_key(make_cfg):
    cfg = make_cfg([*LOGIC_TINY_RUN, "run.cuda_graphs=true", "~logger"])
    with pytest.raises(Exception, match=r"run.cuda_graphs=true replays a language model's training steps"):
        train.train(cfg)


def test_lightnings_own_load_from_checkpoint_restores_the_language_model(lm_run, logic_run):
    """The standard Lightning call, outside any Trainer, the vocabulary read from the checkpoint
    (break: ask ``self.trainer`` in on_load_checkpoint: it raises when no Trainer is attached)."""
    path = best_checkpoint(lm_run[0])
    stored = read_checkpoint(path)
    module = LanguageModelingTask.load_from_checkpoint(path, map_location="cpu")
    assert module.vocab == stored["vocab"]
    for name, value in stored["state_dict"].items():
        assert torch.equal(module.state_dict()[name], value), name
    other = best_checkpoint(logic_run[0])
    with pytest.raises(CheckpointError, match=rf"^{other}: no vocabulary: not a checkpoint written by task=lm$"):
        LanguageModelingTask.load_from_checkpoint(other)


# ----------------------------------------------------------------------------- old checkpoints
def test_old_checkpoints_still_load_evaluate_parse_and_resume(make_cfg, lm_run, tmp_path, capsys):
    """A checkpoint whose hyper_parameters["model"] still has implementation / cuda_graphs (written
    before they became run options) loads (break: drop LEGACY_RUN_FIELDS' pop in stored_backbone:
    BackboneConfig rejects the keys), is evaluated by eval.py, parsed by onlstm-parse and resumed
    by train.py (Lightning's ckpt_path=)."""
    out, trained = lm_run
    old = old_form(best_checkpoint(out), tmp_path / "old.ckpt")
    loaded = load_language_model(old)
    assert loaded.config.hidden_size == 32 and loaded.model.stack.implementation == "fused"

    cfg = make_cfg(["task=lm", f"ckpt_path={old}", *LM_DATA, "+trainer.limit_test_batches=6", "~logger"],
                   subdir="eval", config_name="eval")
    assert evaluate(cfg)["test/ppl"] == pytest.approx(trained["test/ppl"], rel=1e-6)

    assert parse_sentences.main([str(old), "the cat sat on the mat", "--layer", "1", "-q"]) == 0
    assert "layer 1:" in capsys.readouterr().out

    last = old_form(out / "checkpoints" / "last.ckpt", tmp_path / "old_last.ckpt")
    resumed = make_cfg([*LM_TINY_RUN, *LM_LIMITS, "~logger", "trainer.max_epochs=2", f"ckpt_path={last}"],
                       subdir="resumed")
    metrics = train.train(resumed)
    assert metrics["val/ppl"] > 1
    written = read_checkpoint(Path(resumed.paths.output_dir, "checkpoints", "last.ckpt"))
    assert written["global_step"] > read_checkpoint(last)["global_step"]  # it went on training
    assert "implementation" not in written["hyper_parameters"]["model"]


@pytest.mark.parametrize("entry, script", [("eval.py", "onlstm-eval"), ("train.py", "onlstm-train")])
def test_a_console_script_without_the_config_folder_says_how_to_get_it(entry, script, monkeypatch, tmp_path):
    """A non-editable install has train.py and eval.py without conf/: the script stops before Hydra
    with what to do (break: drop the check, or exit with no message)."""
    module = importlib.import_module(entry.removesuffix(".py"))
    monkeypatch.setattr(module, "CONF_DIR", tmp_path / "conf")
    monkeypatch.setattr(module, "main", lambda: pytest.fail("main ran without a config folder"))
    with pytest.raises(SystemExit) as stopped:
        module.cli()
    assert stopped.value.code == (
        f"{script}: no config folder {tmp_path / 'conf'}: the configs are in the project checkout; install it "
        f"editable (pip install -e <checkout>) or run python {entry} from the checkout")


@pytest.mark.parametrize("entry", ["eval", "train"])
def test_a_console_script_with_its_config_folder_runs_its_hydra_entry(entry, monkeypatch):
    module = importlib.import_module(entry)
    calls = []
    monkeypatch.setattr(module, "main", lambda: calls.append(entry))
    module.cli()
    assert calls == [entry]


def test_the_console_script_onlstm_eval_is_eval_cli():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["onlstm-eval"] == "eval:cli"
    assert "eval" in pyproject["tool"]["setuptools"]["py-modules"]


# ----------------------------------------------------------------------------- the entry itself
@pytest.mark.parametrize("name", ["best", "last"])
def test_lightnings_checkpoint_names_are_refused_with_what_to_set(make_cfg, name):
    """best and last mean the checkpoints of a fit eval.py does not run: refused before anything
    is read, naming the value given (break: drop a name from the refused ones: a CheckpointError
    about a file named best)."""
    cfg = make_cfg(["task=lm", f"ckpt_path={name}", "~logger"], config_name="eval")
    with pytest.raises(ValueError, match=rf"set ckpt_path=/path/to/<run>/checkpoints/<name>.ckpt \(got ckpt_path={name}\)"):
        evaluate(cfg)


def test_eval_main_returns_the_tasks_optimized_metric_to_a_sweeper(monkeypatch):
    """What Optuna optimises over eval.py jobs (break: main returns None, or evaluate's whole dict)."""
    import eval as eval_entry

    monkeypatch.setattr(eval_entry, "evaluate", lambda cfg: {"test/acc": 0.625, "test/loss": 1.5})
    cfg = OmegaConf.create({"task": {"optimized_metric": "test/acc"}})
    assert eval_entry.main.__wrapped__(cfg) == 0.625


def test_eval_py_points_the_run_folders_at_its_checkout_when_project_root_is_unset(monkeypatch, tmp_path):
    """Run from another folder, eval.py's logs still land under the checkout (paths.root_dir is
    ${oc.env:PROJECT_ROOT,.}); a PROJECT_ROOT the user set is kept."""
    import eval as eval_entry

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROJECT_ROOT")
    importlib.reload(eval_entry)
    assert os.environ["PROJECT_ROOT"] == str(ROOT)
    monkeypatch.setenv("PROJECT_ROOT", "/elsewhere")
    importlib.reload(eval_entry)
    assert os.environ["PROJECT_ROOT"] == "/elsewhere"
