"""The evidence sweeps (``make evidence``): what each experiment=evidence_* config promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from onlstm import BackboneConfig, RNNLanguageModel
from tasks.jobs import run_folder
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
    assert counts == {"onlstm": 1_919_952, "lstm": 1_882_896}  # docs/evidence.md's "parameters per seed"


def test_make_evidence_runs_the_planned_sweeps_in_order_then_the_report():
    """make evidence runs every sweep the plan names, with the entry script the plan names, the
    training sweeps before the evaluations of their checkpoints, then the report with the plan."""
    from tasks.reports.preregistration import read_plans

    makefile = (ROOT / "Makefile").read_text()
    block = makefile.split("EVIDENCE_SWEEPS := ")[1].split("\nEVIDENCE_ARGS")[0]
    sweeps = [line.strip(' "\\\t') for line in block.splitlines()]
    planned = [f"{s.entry}.py -m experiment={s.experiment}" for plan in read_plans(ROOT / "docs" / "preregistration.md").values()
               for s in plan.sweeps]
    assert sorted(set(sweeps) - {"train.py -m experiment=evidence2_logic seed=1,2,3"}) == sorted(planned)
    assert sweeps.index("train.py -m experiment=evidence2_lm") < sweeps.index("eval.py -m experiment=evidence2_parsing")
    assert sweeps[-1] == "train.py -m experiment=evidence2_logic seed=1,2,3"  # the plan: after seeds 4-9
    assert "OMP_NUM_THREADS=1 $(BIN)/python $$sweep" in makefile
    assert "-m tasks.reports.evidence" in makefile and "--plan docs/preregistration.md" in makefile


# ------------------------------------------------------------------ round 2 (docs/preregistration.md)
def test_round_two_logic_is_round_one_recipe_on_fresh_seeds(make_cfg):
    """The confirmation must differ from round 1 only in its seeds and folder: the same model,
    optimiser, data and CPU budget (the plan's promise)."""
    round1 = make_cfg(["experiment=evidence_logic"], subdir="r1")
    round2 = make_cfg(["experiment=evidence2_logic"], subdir="r2")
    assert dict(round2.hydra.sweeper.params) == {"seed": "4,5,6,7,8,9", "model": "onlstm,lstm"}
    assert round2.hydra.sweep.dir == str(Path(round2.paths.log_dir) / "evidence" / "round2" / "logic")
    assert round2.hydra.launcher.n_jobs == 2  # the two models of one seed side by side
    for key in ("model", "task", "trainer", "callbacks"):
        assert OmegaConf.to_container(round2[key], resolve=False) == OmegaConf.to_container(round1[key], resolve=False), key
    assert (round2.threads, round2.resume) == (round1.threads, round1.resume) == (1, True)


def test_round_two_lm_keeps_the_best_checkpoint_at_each_cpu_mark(make_cfg):
    cfg = make_cfg(["experiment=evidence2_lm"], subdir="lm2")
    assert cfg.callbacks.cpu_time_budget.minutes == 180
    assert list(cfg.callbacks.best_at_cpu_marks.minutes) == [40, 60, 120, 180]
    assert cfg.callbacks.best_at_cpu_marks.dirpath == cfg.callbacks.model_checkpoint.dirpath
    assert dict(cfg.hydra.sweeper.params) == {"seed": "1,2,3", "model": "onlstm"}
    # otherwise round 1's LM recipe
    round1 = make_cfg(["experiment=evidence_lm"], subdir="lm1")
    for key in ("model", "task", "trainer"):
        assert OmegaConf.to_container(cfg[key], resolve=False) == OmegaConf.to_container(round1[key], resolve=False), key


@pytest.mark.parametrize("experiment", ["evidence2_parsing", "evidence2_lm_marks"])
def test_round_two_evaluations_read_every_kept_checkpoint_of_a_finished_lm(make_cfg, experiment):
    cfg = make_cfg([f"experiment={experiment}"], subdir=experiment, config_name="eval")
    lm = make_cfg(["experiment=evidence2_lm"], subdir="lm2")
    marks = [run_folder.cpu_mark_checkpoint_name(m).removesuffix(".ckpt") for m in lm.callbacks.best_at_cpu_marks.minutes]
    weights = dict(cfg.hydra.sweeper.params)["lm_weights"].split(",")
    assert weights == marks + (["initial"] if experiment == "evidence2_parsing" else [])
    lm_run = Path(cfg.paths.log_dir) / Path(lm.hydra.sweep.dir).relative_to(lm.paths.log_dir) / "onlstm_seed141"
    assert cfg.lm_run == str(lm_run) and list(cfg.requires_finished_runs) == [str(lm_run)]
    assert cfg.ckpt_path.startswith(str(lm_run / "checkpoints") + "/")
    assert cfg.resume is True and cfg.threads == 1


def test_round_two_listops_is_the_planned_recipe_at_equal_size(make_cfg):
    """The ListOps sweep composes to what question 3 of the plan names, for both models (break: drop
    the 50-minute budget from conf/experiment/evidence2_listops.yaml: evidence/training's 40 wins)."""
    from tasks.reports.preregistration import read_plans

    sweep = read_plans(ROOT / "docs" / "preregistration.md")["listops"].sweeps[0]
    assert sweep.experiment == "evidence2_listops"
    for arch in sweep.swept["model"]:
        cfg = make_cfg([f"experiment={sweep.experiment}", f"model={arch}"], subdir=f"listops_{arch}")
        wrong = {key: (OmegaConf.select(cfg, key), value) for key, value in sweep.config.items()
                 if OmegaConf.select(cfg, key) != value}
        assert not wrong, f"{arch}: (composed, planned) {wrong}"
        assert dict(cfg.hydra.sweeper.params) == {"seed": ",".join(sweep.swept["seed"]), "model": "onlstm,lstm"}
        assert cfg.hydra.sweep.dir == str(Path(cfg.paths.log_dir) / "evidence" / "round2" / "listops")
        assert cfg.resume is True and cfg.test is True and cfg.hydra.launcher.n_jobs == 2
        assert cfg.callbacks.model_checkpoint.filename == "best" and cfg.callbacks.last_checkpoint.every_n_train_steps == 50
    configs = [BackboneConfig(**OmegaConf.to_container(make_cfg([f"experiment={sweep.experiment}", f"model={arch}"],
                                                                subdir=f"listops_{arch}").model, resolve=True))
               for arch in ("onlstm", "lstm")]
    sizes = [sum(p.numel() for p in RNNLanguageModel(20, config).stack.parameters()) for config in configs]
    assert abs(sizes[0] - sizes[1]) / sizes[1] < 0.05, f"recurrent parameters ON-LSTM {sizes[0]}, LSTM {sizes[1]}"
