"""Schema of the logical-inference task (Bowman et al. propositional logic): the fields, types and
defaults of the datamodule's and the module's signatures (:func:`signature_schema`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from datamodules.propositional_logic import PropositionalLogicDataModule
from tasks.jobs.schemas.base import TaskSchemaBase, signature_schema

PropositionalLogicDataSchema = signature_schema("PropositionalLogicDataSchema", PropositionalLogicDataModule)
# the vocabulary, relations and operator counts come from the datamodule (module_kwargs)
LogicalInferenceSchema = signature_schema(
    "LogicalInferenceSchema", "tasks.logical_inference.LogicalInferenceTask",
    exclude=("model", "run", "vocab_size", "relations", "train_ops", "test_ops", "pad_id"),
)


@dataclass
class LogicalInferenceTaskSchema(TaskSchemaBase):
    datamodule: PropositionalLogicDataSchema = field(default_factory=PropositionalLogicDataSchema)
    module: LogicalInferenceSchema = field(default_factory=LogicalInferenceSchema)


def register(store: ConfigStore) -> None:
    store.store(group="task", name="logic_schema", node=LogicalInferenceTaskSchema)
