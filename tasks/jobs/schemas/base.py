"""Fields every task config has (``conf/task/*.yaml``)."""

from __future__ import annotations

import collections.abc
import functools
import inspect
import operator
import types
import typing
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from hydra.utils import get_class
from omegaconf import MISSING


@dataclass
class TaskSchemaBase:
    name: str = "???"
    optimized_metric: str = "???"
    monitor_mode: str = "min"
    # instantiated beside the callbacks group (e.g. the NT-ASGD switch of the LM task)
    callbacks: dict[str, Any] = field(default_factory=dict)
    # merged into the Trainer's arguments (e.g. reload_dataloaders_every_n_epochs)
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)
    # True: the task evaluates the LM at ckpt_path (parsing, syneval) instead of resuming from it
    evaluates_checkpoint: bool = False


def _config_type(annotation: Any) -> Any:
    """The structured-config type of a signature's annotation: sequences become lists (what a
    YAML list is), the rest stays as written."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [_config_type(a) for a in typing.get_args(annotation)]
        return functools.reduce(operator.or_, args)
    if origin in (list, tuple, collections.abc.Sequence):
        args = typing.get_args(annotation)
        return list[args[0]] if args else list
    return annotation


def signature_schema(name: str, target: str | type, exclude: tuple[str, ...] = (), instantiable: bool = True) -> type:
    """A typed config schema of ``target``'s constructor: one field per keyword argument, with the
    type and default of the signature, which is the one place a default is written; ``_target_``
    names ``target`` for ``hydra.utils.instantiate``. ``target``: the class, or its dotted path as
    a config's ``_target_`` names it (how the schemas name the task modules: the run machinery
    builds tasks from their configs and imports none by name). ``name`` is the schema's class name, which
    config errors show ("Key 'lrr' not in 'LanguageModelingSchema'"). ``exclude``: arguments the
    runner passes itself (the model config, what the datamodule tells the module).
    ``instantiable=False``: no ``_target_``, for a node of plain options that the runner hands to
    ``target`` as arguments."""
    if isinstance(target, str):
        target = get_class(target)
    hints = typing.get_type_hints(target.__init__)
    fields: list[tuple] = [("_target_", str, f"{target.__module__}.{target.__qualname__}")] if instantiable else []
    for argument, parameter in inspect.signature(target.__init__).parameters.items():
        if argument == "self" or argument in exclude or parameter.kind in (parameter.VAR_POSITIONAL,
                                                                             parameter.VAR_KEYWORD):
            continue
        kind = _config_type(hints.get(argument, Any))
        default = parameter.default
        if default is inspect.Parameter.empty:
            fields.append((argument, kind, field(default=MISSING)))  # "???": the config must set it
        elif isinstance(default, (list, tuple)):
            fields.append((argument, kind, field(default_factory=functools.partial(list, default))))
        else:
            fields.append((argument, kind, default))
    schema = make_dataclass(name, fields)
    schema.__module__ = target.__module__
    return schema
