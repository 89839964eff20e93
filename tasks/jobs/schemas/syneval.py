"""Schema of the targeted syntactic evaluation task (``conf/task/syneval.yaml``): the fields, types
and defaults of the datamodule's and the module's signatures (:func:`signature_schema`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from datamodules.minimal_pairs import MinimalPairsDataModule
from tasks.jobs.schemas.base import TaskSchemaBase, signature_schema

MinimalPairsDataSchema = signature_schema("MinimalPairsDataSchema", MinimalPairsDataModule)
SyntacticEvaluationSchema = signature_schema(
    "SyntacticEvaluationSchema", "tasks.syntactic_evaluation.SyntacticEvaluationTask", exclude=("checkpoint", "run")
)


@dataclass
class SyntacticEvaluationTaskSchema(TaskSchemaBase):
    datamodule: MinimalPairsDataSchema = field(default_factory=MinimalPairsDataSchema)
    module: SyntacticEvaluationSchema = field(default_factory=SyntacticEvaluationSchema)


def register(store: ConfigStore) -> None:
    store.store(group="task", name="syneval_schema", node=SyntacticEvaluationTaskSchema)
