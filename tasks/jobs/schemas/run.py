"""Schema of the run options (group ``run``, ``conf/run/default.yaml``): how the
model runs, not what it is. ``run.implementation`` picks the ON-LSTM recurrence's backend
(``onlstm.ONLSTMStack.IMPLEMENTATIONS``), ``run.cuda_graphs`` replays the LM's training steps as
CUDA graphs. The fields, types and defaults are those of ``onlstm.RNNLanguageModel``'s execution
arguments (:func:`signature_schema`). The runner hands the node to the task modules beside the
model config; neither lands in a checkpoint, so a checkpoint trained one way is evaluated or
resumed any other way (``python eval.py task=parsing run.implementation=reference ckpt_path=...``).
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from onlstm.lm import RNNLanguageModel
from tasks.jobs.schemas.base import signature_schema

RunSchema = signature_schema("RunSchema", RNNLanguageModel, exclude=("vocab_size", "cfg"), instantiable=False)


def register(store: ConfigStore) -> None:
    store.store(group="run", name="run_schema", node=RunSchema)
