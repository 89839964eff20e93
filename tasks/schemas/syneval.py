"""Schema of the targeted syntactic evaluation task (``conf/task/syneval.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from tasks.schemas.base import TaskSchemaBase


@dataclass
class MinimalPairsDataSchema:
    _target_: str = "datamodules.minimal_pairs.MinimalPairsDataModule"
    data_dir: str = "???"
    folder: str = "syneval"  # under data_dir: one JSONL file per test case + counts.json
    categories: list[str] | None = None  # test-case files to score (file stems); null = all
    limit_per_condition: int | None = None  # first N items of each (case, condition); null = all
    casing: str = "auto"  # auto | lower | sentence (capitalise the first word)
    final_period: bool | None = None  # append " ."; null = when "." is in the LM's vocabulary
    skip_oov: bool = False  # skip pairs with a word outside the vocabulary (else it reads as <unk>)
    batch_size: int = 256  # distinct sentences per padded batch


@dataclass
class SyntacticEvaluationSchema:
    _target_: str = "tasks.syntactic_evaluation.SyntacticEvaluationTask"


@dataclass
class SyntacticEvaluationTaskSchema(TaskSchemaBase):
    datamodule: MinimalPairsDataSchema = field(default_factory=MinimalPairsDataSchema)
    module: SyntacticEvaluationSchema = field(default_factory=SyntacticEvaluationSchema)


def register(store: ConfigStore) -> None:
    store.store(group="task", name="syneval_schema", node=SyntacticEvaluationTaskSchema)
