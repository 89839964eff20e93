"""The training entry point: ``python train.py [experiment=...] [task=...] [model=...] [key=value ...]``
(evaluating a checkpoint: eval.py).

``train(cfg)`` fits (unless ``train=false``) and tests, and returns the metrics; ``main`` returns
the value of ``task.optimized_metric`` so Hydra sweepers (Optuna) can optimise it.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra
from omegaconf import DictConfig

from tasks.jobs.runner import console_script, optimized_value, register_resolvers, train
from tasks.jobs.schemas import register_configs

register_configs()
register_resolvers()

__all__ = ["cli", "main", "train"]  # train(cfg): fit and/or test as the config says (tasks.jobs.runner.train)


# An absolute config path: Hydra reads a relative one against the *module* when train is imported
# (the onlstm-train console script), where conf/ is no package, and fails.
CONF_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    return optimized_value(cfg, train(cfg))


def cli() -> None:
    """The ``onlstm-train`` console script: :func:`main`, once the config folder is known to exist."""
    console_script("onlstm-train", "train.py", CONF_DIR, main)


if __name__ == "__main__":
    main()
