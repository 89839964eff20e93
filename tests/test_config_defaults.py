"""One source per default: the signatures (through the typed schemas) hold every default, and the
YAML files only override. A value restated in YAML is a second copy that drifts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from onlstm import BackboneConfig
from tasks.jobs.schemas import listops, lm, logic, parsing, syneval
from tests.helpers import ROOT

CONF = ROOT / "conf"
SCHEMAS = {
    "lm": lm.LanguageModelingTaskSchema,
    "logic": logic.LogicalInferenceTaskSchema,
    "parsing": parsing.ParsingTaskSchema,
    "syneval": syneval.SyntacticEvaluationTaskSchema,
    "listops": listops.ListOpsTaskSchema,
}


def own_values(path: Path) -> dict:
    """What a YAML file itself sets (its defaults list left out)."""
    body = yaml.safe_load(path.read_text()) or {}
    body.pop("defaults", None)
    return body


def leaves(node, prefix: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def lookup(node, dotted: str):
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


@pytest.mark.parametrize("task", sorted(SCHEMAS))
def test_task_yaml_sets_nothing_its_schema_already_says(task):
    """Guards against a task YAML restating a signature's default (break: write `batch_size: 20`
    back into conf/task/lm.yaml)."""
    schema = OmegaConf.to_container(OmegaConf.structured(SCHEMAS[task]))
    values = own_values(CONF / "task" / f"{task}.yaml")
    values = values.get("task", values)  # task=logic is a _global_ file with a task: node
    repeated = [key for key, value in leaves(values) if not (isinstance(value, str) and "${" in value)
                and lookup(schema, key) == value]
    assert not repeated, f"conf/task/{task}.yaml restates its schema's defaults: {repeated}"


@pytest.mark.parametrize("arch", ["onlstm", "lstm"])
def test_model_yaml_only_names_the_architecture(arch):
    assert own_values(CONF / "model" / f"{arch}.yaml") == {"arch": arch}


def parent_config(make_cfg, experiment: Path):
    """The composed config an experiment builds on: its parent experiment, or the groups it picks."""
    defaults = yaml.safe_load(experiment.read_text()).get("defaults", [])
    parents = [d for d in defaults if isinstance(d, str) and d != "_self_"]
    if parents:
        return make_cfg([f"experiment={parents[0]}"], subdir=f"parent_{experiment.stem}")
    picks = [f"{k.split('/')[-1]}={v}" for d in defaults if isinstance(d, dict)
             for k, v in d.items() if k.startswith("override /") and not k.startswith("override /hydra")]
    return make_cfg(picks, subdir=f"parent_{experiment.stem}")


@pytest.mark.parametrize("experiment", sorted(p for p in (CONF / "experiment").glob("*.yaml")), ids=lambda p: p.stem)
def test_experiment_overrides_only_what_it_changes(make_cfg, experiment):
    """Guards against an experiment restating what it inherits (break: copy ptb_paper's
    `model.emb_size: 400` into it): every value it sets differs from what it builds on."""
    parent = OmegaConf.to_container(parent_config(make_cfg, experiment), resolve=False)
    repeated = [key for key, value in leaves(own_values(experiment))
                if key not in ("tags",) and not key.startswith("hydra.") and lookup(parent, key) == value]
    assert not repeated, f"{experiment.name} restates values it inherits: {repeated}"


def test_signature_schemas_carry_the_signature_defaults():
    """The schema is made from the signature: change a default there and the config follows."""
    fields = {f.name: f for f in dataclasses.fields(lm.LanguageModelingSchema)}
    assert fields["lr"].default == 30.0 and fields["clip"].default == 0.25 and "vocab" not in fields
    data = {f.name: f for f in dataclasses.fields(parsing.TreebankDataSchema)}
    assert data["dev_sections"].default_factory() == [0] and data["sections"].default_factory() == [1]
    assert data["data_dir"].default == "???"


@pytest.mark.parametrize("config_name", ["config", "eval"])
def test_the_model_node_is_what_the_model_is_and_run_how_it_runs(make_cfg, config_name):
    """Guards what a checkpoint stores (the model node, saved as hyper_parameters["model"]): the
    architecture's fields only; the execution choices are the run node's (break: add
    `implementation: fused` back to conf/model/onlstm.yaml or BackboneConfig)."""
    overrides = ["task=parsing", "ckpt_path=/x.ckpt"] if config_name == "eval" else []
    cfg = make_cfg(overrides, config_name=config_name)
    assert set(cfg.model) == {f.name for f in dataclasses.fields(BackboneConfig)}
    assert not {"implementation", "cuda_graphs"} & set(cfg.model)
    assert OmegaConf.to_container(cfg.run) == {"implementation": "fused", "cuda_graphs": False}


def test_entry_point_configs_do_not_restate_what_every_job_has():
    """conf/job.yaml holds what train.py's and eval.py's configs share; neither restates it."""
    shared = set(own_values(CONF / "job.yaml"))
    assert {"seed", "resume", "requires_finished_runs"} <= shared
    for name in ("config", "eval"):
        assert not shared & set(own_values(CONF / f"{name}.yaml")), name
        assert "job" in yaml.safe_load((CONF / f"{name}.yaml").read_text())["defaults"]
