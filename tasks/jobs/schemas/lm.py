"""Schemas of the backbone (group ``model``) and of the language-modeling task.

The fields, types and defaults are those of the classes' signatures (:func:`signature_schema`):
``onlstm.BackboneConfig`` for the model, the datamodule's and the module's constructors for the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from datamodules.text_corpus import TextCorpusDataModule
from onlstm.lm import BackboneConfig
from tasks.jobs.schemas.base import TaskSchemaBase, signature_schema

TextCorpusDataSchema = signature_schema("TextCorpusDataSchema", TextCorpusDataModule)
LanguageModelingSchema = signature_schema(
    "LanguageModelingSchema", "tasks.language_modeling.LanguageModelingTask", exclude=("model", "vocab", "run")
)


@dataclass
class LanguageModelingTaskSchema(TaskSchemaBase):
    datamodule: TextCorpusDataSchema = field(default_factory=TextCorpusDataSchema)
    module: LanguageModelingSchema = field(default_factory=LanguageModelingSchema)


def register(store: ConfigStore) -> None:
    store.store(group="model", name="backbone_schema", node=BackboneConfig)
    store.store(group="task", name="lm_schema", node=LanguageModelingTaskSchema)
