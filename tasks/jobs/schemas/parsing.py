"""Schema of the unsupervised-parsing task (``conf/task/parsing.yaml``): the fields, types and
defaults of the datamodule's and the module's signatures (:func:`signature_schema`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from datamodules.treebank import TreebankDataModule
from tasks.jobs.schemas.base import TaskSchemaBase, signature_schema

TreebankDataSchema = signature_schema("TreebankDataSchema", TreebankDataModule)
# the checkpoint is ckpt_path; the short-sentence limit and the development set come from the datamodule
UnsupervisedParsingSchema = signature_schema(
    "UnsupervisedParsingSchema", "tasks.unsupervised_parsing.UnsupervisedParsingTask",
    exclude=("checkpoint", "run", "max_length", "has_dev_set"),
)


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
