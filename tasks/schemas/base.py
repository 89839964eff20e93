"""Fields every task config has (``conf/task/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskSchemaBase:
    name: str = "???"
    optimized_metric: str = "???"
    monitor_mode: str = "min"
    # instantiated beside the callbacks group (e.g. the NT-ASGD switch of the LM task)
    callbacks: dict[str, Any] = field(default_factory=dict)
    # merged into the Trainer's arguments (e.g. reload_dataloaders_every_n_epochs)
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)
    # True: the task evaluates the LM at ckpt_path (parsing, syneval) instead of resuming from it
    evaluates_checkpoint: bool = False
