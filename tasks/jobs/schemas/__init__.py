"""Typed config schemas (Hydra structured configs): a typo or a wrong type is an error that names the key.

Each YAML of a schema-backed group starts with ``defaults: [<name>_schema, _self_]``. Every module
of this package defines ``register(store)``; :func:`register_configs` calls them all, so a new task
adds its schema file here and nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil

from hydra.core.config_store import ConfigStore


def register_configs() -> None:
    """Put every schema into Hydra's ConfigStore (idempotent); call before composing."""
    store = ConfigStore.instance()
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(store)
