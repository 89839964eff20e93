"""Schemas of the backbone (group ``model``) and of the language-modeling task."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from onlstm.lm import BackboneConfig
from tasks.schemas.base import TaskSchemaBase


@dataclass
class TextCorpusDataSchema:
    _target_: str = "datamodules.text_corpus.TextCorpusDataModule"
    data_dir: str = "???"
    corpus: str = "ptb"
    batch_size: int = 20
    eval_batch_size: int = 10
    test_batch_size: int = 1
    bptt: int = 70
    variable_bptt: bool = True
    seed: int = 141
    train_fraction: float = 1.0


@dataclass
class LanguageModelingSchema:
    _target_: str = "tasks.language_modeling.LanguageModelingTask"
    optimizer: str = "sgd"
    lr: float = 30.0
    weight_decay: float = 1.2e-6
    clip: float = 0.25
    alpha: float = 2.0
    beta: float = 1.0
    asgd: bool = True
    plateau_factor: float | None = None
    plateau_patience: int = 0


@dataclass
class LanguageModelingTaskSchema(TaskSchemaBase):
    datamodule: TextCorpusDataSchema = field(default_factory=TextCorpusDataSchema)
    module: LanguageModelingSchema = field(default_factory=LanguageModelingSchema)


def register(store: ConfigStore) -> None:
    store.store(group="model", name="backbone_schema", node=BackboneConfig)
    store.store(group="task", name="lm_schema", node=LanguageModelingTaskSchema)
