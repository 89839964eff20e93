"""What every task's datamodule offers the run machinery beyond Lightning's hooks (the data half of
the task contract; the module half is :class:`tasks.jobs.contract.TaskModule`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl


class TaskDataModule(pl.LightningDataModule):
    """Base of every datamodule a ``conf/task/*.yaml`` names.

    The runner builds the datamodule first, then the task module with :meth:`module_kwargs` among
    its arguments, then hands the module's vocabulary back with :meth:`use_vocabulary` when the
    model brings one (a trained LM's). Both default to "nothing to say".
    """

    def module_kwargs(self) -> dict[str, Any]:
        """Arguments of the task module that the data decides (a vocabulary, label set, lengths)."""
        return {}

    def use_vocabulary(self, words: Sequence[str]) -> None:
        """Encode the data with the model's vocabulary ``words`` (the data's own otherwise)."""
