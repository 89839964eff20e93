"""Schema of the logical-inference task (Bowman et al. propositional logic)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from tasks.schemas.base import TaskSchemaBase


@dataclass
class PropositionalLogicDataSchema:
    _target_: str = "datamodules.propositional_logic.PropositionalLogicDataModule"
    data_dir: str = "???"  # the folder of train0..train12 / test0..test12
    test_dir: str | None = None  # testN files from elsewhere (e.g. `python -m datamodules.logic_formulas`); default data_dir
    train_ops: list[int] = field(default_factory=lambda: list(range(7)))
    test_ops: list[int] = field(default_factory=lambda: list(range(13)))
    val_every: int = 10
    batch_size: int = 128
    eval_batch_size: int = 256
    train_fraction: float = 1.0
    val_fraction: float = 1.0
    test_fraction: float = 1.0
    bucket: bool = True
    seed: int = 141
    num_workers: int = 0
    # longer test formulas from the project's generator: pairs per number of operators, seed
    generated_test_ops: list[int] = field(default_factory=list)
    generated_test_count: int = 300
    generated_test_seed: int = 0


@dataclass
class LogicalInferenceSchema:
    _target_: str = "tasks.logical_inference.LogicalInferenceTask"
    lr: float = 1e-3
    weight_decay: float = 1.2e-6
    mlp_hidden: int = 400
    mlp_dropout: float = 0.2
    plateau_factor: float = 0.5
    plateau_patience: int = 2


@dataclass
class LogicalInferenceTaskSchema(TaskSchemaBase):
    datamodule: PropositionalLogicDataSchema = field(default_factory=PropositionalLogicDataSchema)
    module: LogicalInferenceSchema = field(default_factory=LogicalInferenceSchema)


def register(store: ConfigStore) -> None:
    store.store(group="task", name="logic_schema", node=LogicalInferenceTaskSchema)
