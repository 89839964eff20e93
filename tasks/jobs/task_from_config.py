"""A task's datamodule and LightningModule from its config node, through the task contract
(:mod:`tasks.jobs.contract`, :class:`datamodules.contract.TaskDataModule`): the module gets the
backbone (``model``, or a checkpoint's), the run options (``run``) and what the data says
(``module_kwargs()``), and hands its vocabulary back to the data when it brings one."""

from __future__ import annotations

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from datamodules.contract import TaskDataModule
from onlstm import BackboneConfig, ONLSTMStack
from onlstm.checkpoints import CheckpointError, is_model_folder, load_language_model, read_checkpoint, stored_backbone
from tasks.jobs.contract import TaskModule


def run_options(cfg: DictConfig) -> dict:
    """The ``run`` node (how the model runs: tasks/jobs/schemas/run.py) as the modules' ``run``
    argument, checked here so that a wrong backend names its key before anything is built."""
    options = OmegaConf.to_container(cfg.run, resolve=True) if cfg.get("run") is not None else {}
    implementation = options.get("implementation")
    if implementation is not None and implementation not in ONLSTMStack.IMPLEMENTATIONS:
        raise ValueError(
            f"run.implementation must be one of {sorted(ONLSTMStack.IMPLEMENTATIONS)}, got {implementation!r} "
            "(docs/performance.md says what each runs)"
        )
    return options


def connect(datamodule: TaskDataModule, module: TaskModule) -> TaskModule:
    """The data is encoded with the model's vocabulary when the model brings one."""
    if module.vocab is not None:
        datamodule.use_vocabulary(module.vocab)
    return module


def build_module(cfg: DictConfig, datamodule: TaskDataModule) -> TaskModule:
    """The task module to train: ``cfg.task.module`` with the backbone ``cfg.model``."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    BackboneConfig(**model).validate()  # a config error names its key before anything is built
    module = instantiate(cfg.task.module, model=model, run=run_options(cfg), _convert_="all", **datamodule.module_kwargs())
    return connect(datamodule, module)


def evaluation_module(task: DictConfig, run: dict, datamodule: TaskDataModule, path: str,
                      checkpoint: dict | None = None) -> TaskModule:
    """The task module that evaluates the checkpoint at ``path`` (``checkpoint``: its contents, when
    already read). A task that evaluates a trained LM (parsing, syneval) loads it itself; a
    trainable task (lm, logic) is rebuilt from the arguments its checkpoint stored
    (``hyper_parameters``: the backbone, and e.g. the logic classifier's ``mlp_hidden``), so that
    evaluating needs neither ``model=`` nor the experiment that trained it; the weights are loaded
    by ``trainer.test(ckpt_path=...)``. From a model folder (``onlstm-export``) the module comes
    from :meth:`TaskModule.from_language_model`, with the folder's weights."""
    extra = datamodule.module_kwargs()
    if task.get("evaluates_checkpoint"):
        return connect(datamodule, instantiate(task.module, checkpoint=path, run=run, _convert_="all", **extra))
    cls = get_class(task.module._target_)
    if is_model_folder(path):
        try:
            return connect(datamodule, cls.from_language_model(load_language_model(path, run), run, **extra))
        except NotImplementedError:
            raise CheckpointError(
                f"{path}: a language-model folder, which task={task.name} cannot evaluate ({cls.__name__} is not a "
                "language model); evaluate it with task=lm, parsing or syneval, or give task="
                f"{task.name} a checkpoint of its own"
            ) from None
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    try:
        arguments = dict(checkpoint["hyper_parameters"])
        arguments["model"] = stored_backbone(checkpoint)
        module = cls(**{**arguments, **extra, "run": run})
    except (KeyError, TypeError) as err:
        raise CheckpointError(
            f"{path}: not a checkpoint of task={task.name} ({cls.__name__} cannot be built from what it stores: "
            f"{type(err).__name__}: {err}); evaluate it with the task that trained it (task=lm or task=logic)"
        ) from None
    return connect(datamodule, module)
