"""Schema of the unsupervised-parsing task (``conf/task/parsing.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from tasks.schemas.base import TaskSchemaBase


@dataclass
class TreebankDataSchema:
    _target_: str = "datamodules.treebank.TreebankDataModule"
    data_dir: str = "???"
    # folder of .mrg files under data_dir (the free NLTK WSJ sample by default)
    treebank: str = "treebank/combined"
    # regex over each file's path relative to that folder (whole path must match)
    file_pattern: str = r"(?i)(.*/)?wsj_[0-9]+\.mrg"
    # WSJ sections to keep (e.g. [23] for WSJ test); null keeps every matching file
    sections: list[int] | None = None
    # the short-sentence set: at most this many words (WSJ10 protocol)
    max_length: int = 10
    # sentences per test batch (padded; results do not depend on it)
    batch_size: int = 64


@dataclass
class UnsupervisedParsingSchema:
    _target_: str = "tasks.unsupervised_parsing.UnsupervisedParsingTask"
    n_figures: int = 4
    seed: int = 141
    labels: list[str] = field(default_factory=lambda: ["NP", "VP", "PP", "SBAR", "ADJP", "ADVP", "INTJ"])


@dataclass
class ParsingTaskSchema(TaskSchemaBase):
    name: str = "parsing"
    optimized_metric: str = "test/f1_sentence_best"
    monitor_mode: str = "max"
    evaluates_checkpoint: bool = True
    datamodule: TreebankDataSchema = field(default_factory=TreebankDataSchema)
    module: UnsupervisedParsingSchema = field(default_factory=UnsupervisedParsingSchema)


def register(store: ConfigStore) -> None:
    store.store(group="task", name="parsing_schema", node=ParsingTaskSchema)
