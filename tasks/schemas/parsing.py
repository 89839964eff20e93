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
    # WSJ sections of the test set (the NLTK sample's second half, wsj_0100-0199; [23] for WSJ test);
    # null: every matching file
    sections: list[int] | None = field(default_factory=lambda: [1])
    # WSJ sections of the development set, where the layer is chosen (the sample's first half,
    # wsj_0001-0099; [22] with the full WSJ); null: no development set (then set module.layer)
    dev_sections: list[int] | None = field(default_factory=lambda: [0])
    # the short-sentence set: at most this many words (WSJ10 protocol)
    max_length: int = 10
    # sentences per test batch (padded; results do not depend on it)
    batch_size: int = 64


@dataclass
class UnsupervisedParsingSchema:
    _target_: str = "tasks.unsupervised_parsing.UnsupervisedParsingTask"
    # the layer whose trees are reported; null: the best layer on the development set
    layer: int | None = None
    n_figures: int = 4
    seed: int = 141
    labels: list[str] = field(default_factory=lambda: ["NP", "VP", "PP", "SBAR", "ADJP", "ADVP", "INTJ"])


@dataclass
class ParsingTaskSchema(TaskSchemaBase):
    name: str = "parsing"
    optimized_metric: str = "dev/f1_sentence"
    monitor_mode: str = "max"
    evaluates_checkpoint: bool = True
    datamodule: TreebankDataSchema = field(default_factory=TreebankDataSchema)
    module: UnsupervisedParsingSchema = field(default_factory=UnsupervisedParsingSchema)


def register(store: ConfigStore) -> None:
    store.store(group="task", name="parsing_schema", node=ParsingTaskSchema)
