"""The training entry point: ``python train.py [experiment=...] [task=...] [model=...] [key=value ...]``
(evaluating a checkpoint: eval.py).

``train(cfg)`` fits (unless ``train=false``) and tests, and returns the metrics; ``main`` returns
the value of ``task.optimized_metric`` so Hydra sweepers (Optuna) can optimise it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra
from omegaconf import DictConfig

from tasks.runner import register_resolvers, run
from tasks.schemas import register_configs

log = logging.getLogger("onlstm.train")
register_configs()
register_resolvers()


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and/or test as the config says; always close the experiment tracker."""
    try:
        return run(cfg)
    except Exception:
        log.exception("run failed; output folder: %s", cfg.paths.get("output_dir", "?"))
        raise
    finally:
        wandb = sys.modules.get("wandb")
        if wandb is not None and wandb.run is not None:
            wandb.finish()  # so that the next job of a multirun starts its own run


# An absolute config path: Hydra reads a relative one against the *module* when train is imported
# (the onlstm-train console script), where conf/ is no package, and fails.
CONF_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    name = cfg.task.get("optimized_metric")
    if name and name in metrics:
        return metrics[name]
    return None


def cli() -> None:
    """The ``onlstm-train`` console script: :func:`main`, once the config folder is known to exist.

    The Hydra configs (``conf/``) live in the project checkout, beside this file; a non-editable
    install copies this module without them, and Hydra's own error would not say what to do.
    """
    if not CONF_DIR.is_dir():
        sys.exit(
            f"onlstm-train: no config folder {CONF_DIR}: the configs are in the project checkout; "
            "install it editable (pip install -e <checkout>) or run python train.py from the checkout"
        )
    main()


if __name__ == "__main__":
    main()
