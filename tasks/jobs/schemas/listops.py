"""Schema of the ListOps task: the fields, types and defaults of the datamodule's and the module's
signatures (:func:`signature_schema`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from datamodules.listops import ListOpsDataModule
from tasks.jobs.schemas.base import TaskSchemaBase, signature_schema

ListOpsDataSchema = signature_schema("ListOpsDataSchema", ListOpsDataModule)
# the vocabulary, classes, sources, length buckets and training lengths come from the datamodule (module_kwargs)
ListOpsSchema = signature_schema(
    "ListOpsSchema", "tasks.listops.ListOpsTask",
    exclude=("model", "run", "vocab_size", "pad_id", "num_classes", "tokens", "sources", "test_sources",
             "length_buckets", "max_depth", "train_max_length"),
)


@dataclass
class ListOpsTaskSchema(TaskSchemaBase):
    datamodule: ListOpsDataSchema = field(default_factory=ListOpsDataSchema)
    module: ListOpsSchema = field(default_factory=ListOpsSchema)


def register(store: ConfigStore) -> None:
    store.store(group="task", name="listops_schema", node=ListOpsTaskSchema)
