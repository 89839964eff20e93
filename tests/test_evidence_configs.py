"""The evidence sweeps (``make evidence``): what each experiment=evidence_* config promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from onlstm import BackboneConfig, RNNLanguageModel
from tests.helpers import ROOT

SWEEPS = ("lm", "parsing", "logic", "syneval")
EVAL_SWEEPS = ("parsing",)


@pytest.mark.parametrize("kind", SWEEPS)
def test_evidence_sweep_is_resumable_seeded_and_runs_two_one_thread_jobs(make_cfg, kind):
    # the parsing sweep evaluates the LM sweep's checkpoints: eval.py's config (conf/eval.yaml)
    cfg = make_cfg([f"experiment=evidence_{kind}"], subdir=kind, config_name="eval" if kind in EVAL_SWEEPS else "config")
    assert cfg.resume is True and cfg.threads == 1
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
    params = dict(cfg.hydra.sweeper.params)
    assert params["seed"] == "1,2,3"
    # a fixed folder per job (named by what it runs), so that the same command finds earlier work
    assert cfg.hydra.sweep.dir == str(Path(cfg.paths.log_dir) / "evidence" / kind)
    assert "${now:" not in OmegaConf.to_yaml(cfg.hydra.sweep, resolve=False)
    if kind == "parsing":
        assert params["lm_weights"] == "best,initial"
        assert cfg.ckpt_path == str(Path(cfg.paths.log_dir) / "evidence/lm/onlstm_seed141/checkpoints/best.ckpt")
        assert list(cfg.requires_finished_runs) == [str(Path(cfg.paths.log_dir) / "evidence/lm/onlstm_seed141")]
        # the job folders the sweep has used since it ran with train.py: resume=true finds them
        assert OmegaConf.to_container(cfg.hydra.sweep, resolve=True)["subdir"] == "onlstm_seed141_best"
        assert list(cfg.task.datamodule.dev_sections) == [0] and list(cfg.task.datamodule.sections) == [1]
    else:
        assert params["model"] == "onlstm,lstm"
        assert cfg.callbacks.cpu_time_budget.minutes == 40  # the same budget for both models
        assert cfg.callbacks.model_checkpoint.filename == "best" and cfg.callbacks.last_checkpoint.every_n_train_steps


def test_lm_evidence_models_have_equal_parameter_counts_within_five_percent(make_cfg):
    counts = {}
    for arch in ("onlstm", "lstm"):
        cfg = make_cfg(["experiment=evidence_lm", f"model={arch}"], subdir=arch)
        model = RNNLanguageModel(10_000, BackboneConfig(**OmegaConf.to_container(cfg.model)))
        counts[arch] = sum(p.numel() for p in model.parameters())
    assert abs(counts["onlstm"] - counts["lstm"]) / counts["lstm"] < 0.05
    assert counts == {"onlstm": 1_919_952, "lstm": 1_882_896}  # the numbers in evidence_lm.yaml's comment
    assert "1,919,952" in (ROOT / "conf" / "experiment" / "evidence_lm.yaml").read_text()


def test_make_evidence_runs_every_sweep_then_the_report():
    makefile = (ROOT / "Makefile").read_text()
    assert "EVIDENCE_SWEEPS := " + " ".join(SWEEPS) in makefile
    assert "$$entry -m experiment=evidence_$$sweep" in makefile and "-m tasks.report" in makefile
    assert "EVIDENCE_EVAL_SWEEPS := " + " ".join(EVAL_SWEEPS) in makefile
    assert "case $$sweep in $(EVIDENCE_EVAL_SWEEPS)) echo eval.py;; *) echo train.py;; esac" in makefile
