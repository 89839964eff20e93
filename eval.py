"""Evaluate a trained checkpoint: ``python eval.py task=<task> ckpt_path=<ckpt> [key=value ...]``.

    python eval.py task=parsing ckpt_path=<lm ckpt>      unsupervised parsing of the treebank
    python eval.py task=syneval ckpt_path=<lm ckpt>      the Marvin & Linzen suite
    python eval.py task=lm ckpt_path=<lm ckpt>           test-split perplexity
    python eval.py task=logic ckpt_path=<logic ckpt>     test accuracy per number of operators

An LM's ckpt_path (parsing, syneval, lm) may also be a model folder that ``onlstm-export`` wrote.

The model is the checkpoint's (sizes, chunk, dropouts, weights, vocabulary); the data, the run
options (``run.implementation``), the Trainer and the loggers are this config's (``conf/eval.yaml``).
``evaluate(cfg)`` returns the metrics; ``main`` returns ``task.optimized_metric`` for sweepers.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra
from omegaconf import DictConfig

from tasks.jobs.runner import console_script, evaluate, optimized_value, register_resolvers
from tasks.jobs.schemas import register_configs

register_configs()
register_resolvers()

__all__ = ["cli", "evaluate", "main"]  # evaluate(cfg): test cfg.ckpt_path as the config says (tasks.jobs.runner.evaluate)


# absolute, as in train.py: the onlstm-eval console script imports this module from elsewhere
CONF_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return optimized_value(cfg, evaluate(cfg))


def cli() -> None:
    """The ``onlstm-eval`` console script: :func:`main`, once the config folder is known to exist."""
    console_script("onlstm-eval", "eval.py", CONF_DIR, main)


if __name__ == "__main__":
    main()
