"""Every experiment and task composes to the values it composed to when the snapshot was taken
(``tests/fixtures/composed_configs.yaml``): a change to conf/, to a schema or to a signature's
default that moves a composed value, drops a key or reorders one (callbacks run in the order
their config lists them) fails here, naming the config.

Composed: each ``conf/experiment/*.yaml`` with model=onlstm and model=lstm (through eval.py's
config for the experiments that only evaluate), and each plain ``task=...`` through both entry
points' configs; resolved, with the paths fixed (``/ROOT``, ``/DATA``, ``/OUTPUT``) and Hydra's
timestamps written ``<now>``. The job's config and Hydra's run, sweep, sweeper, launcher and
callbacks nodes are compared; a ``_target_`` by its class name, so that a class moving to another
module is not a change of value (that every ``_target_`` imports is tested where configs are
instantiated).

After an intended change, regenerate the snapshot and review its diff:

    PYTHONPATH=. python -m tests.test_config_snapshot
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict, read_write

from tests.helpers import EVAL_ONLY_EXPERIMENTS, ROOT

SNAPSHOT = ROOT / "tests" / "fixtures" / "composed_configs.yaml"
FIXED_PATHS = ["paths.root_dir=/ROOT", "paths.data_dir=/DATA"]
HYDRA_NODES = ("run", "sweep", "sweeper", "launcher", "callbacks")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}-\d{6}")


def cases() -> dict[str, tuple[str, list[str]]]:
    """Snapshot name -> (config name, overrides)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for path in sorted((ROOT / "conf" / "experiment").glob("*.yaml")):
        config_name = "eval" if path.stem in EVAL_ONLY_EXPERIMENTS else "config"
        for model in ("onlstm", "lstm"):
            found[f"experiment={path.stem} model={model}"] = (config_name, [f"experiment={path.stem}", f"model={model}"])
    for task in ("lm", "logic", "parsing", "syneval", "listops"):
        for config_name in ("config", "eval"):
            found[f"{config_name}: task={task}"] = (config_name, [f"task={task}"])
    return found


def _class_names(node):
    if isinstance(node, dict):
        return {k: (v.rpartition(".")[2] if k == "_target_" and isinstance(v, str) else _class_names(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_class_names(v) for v in node]
    if isinstance(node, str):
        return TIMESTAMP.sub("<now>", node)
    return node


def _resolved(node, key: str):
    if OmegaConf.is_missing(node, key):
        return "???"
    value = node[key]
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def composed(config_name: str, overrides: list[str]) -> dict:
    """The resolved config that ``config_name`` with ``overrides`` composes to, paths fixed."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=[*overrides, *FIXED_PATHS], return_hydra_config=True)
    with open_dict(cfg), read_write(cfg):
        cfg.paths.output_dir = "/OUTPUT"
        cfg.hydra.job.num = 0  # what a sweep's first job has (the default hydra.sweep.subdir reads it)
    HydraConfig.instance().set_config(cfg)
    job = {key: _resolved(cfg, key) for key in cfg if key != "hydra"}
    job["hydra"] = {key: _resolved(cfg.hydra, key) for key in HYDRA_NODES}
    GlobalHydra.instance().clear()
    return _class_names(job)


def dump(values: dict) -> str:
    return yaml.safe_dump(values, sort_keys=False, allow_unicode=True, width=120)


def write_snapshot(path: Path = SNAPSHOT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot = {name: composed(*case) for name, case in cases().items()}
    path.write_text("# written by `PYTHONPATH=. python -m tests.test_config_snapshot`; see that module\n" + dump(snapshot))
    return path


def _snapshot() -> dict:
    return yaml.safe_load(SNAPSHOT.read_text())


def test_the_snapshot_covers_every_experiment_and_task():
    assert sorted(_snapshot()) == sorted(cases())


@pytest.mark.parametrize("name", sorted(cases()))
def test_config_composes_as_in_the_snapshot(name):
    config_name, overrides = cases()[name]
    # compared as YAML text: key order counts (it is the order callbacks and loggers are built in)
    assert dump(composed(config_name, overrides)) == dump(_snapshot()[name])


if __name__ == "__main__":
    print(f"wrote {write_snapshot()}")
