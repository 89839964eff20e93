"""Word-level language modeling, AWD-LSTM style (the paper's Section 6.1).

Manual optimisation, because every step needs what automatic optimisation hides: the learning
rate scaled by seq_len / bptt for that batch only, AR/TAR on the stack's outputs, norm clipping,
and the NT-ASGD switch that replaces the optimizer mid-run. Lightning 2.x has no truncated BPTT,
so the hidden state is carried (detached) across batches here and reset at each epoch start.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.nn import functional as F
from torchmetrics import MinMetric, SumMetric

from onlstm import BackboneConfig, RNNLanguageModel
from onlstm.checkpoints import CheckpointError, LoadedLM, read_checkpoint
from onlstm.stack import Hidden
from tasks.jobs.contract import TaskModule


def detach_hidden(hidden: Hidden) -> Hidden:
    return [(h.detach(), c.detach()) for h, c in hidden]


class LanguageModelingTask(TaskModule):
    def __init__(
        self,
        model: dict,
        vocab: list[str],
        run: dict | None = None,  # how the model runs (the `run` config: implementation, cuda_graphs); not saved
        optimizer: str = "sgd",  # "sgd" (with NT-ASGD when asgd=True) or "adam"
        lr: float = 30.0,
        weight_decay: float = 1.2e-6,
        clip: float = 0.25,
        alpha: float = 2.0,  # activation regularisation (AR) on the dropped last-layer output
        beta: float = 1.0,  # temporal activation regularisation (TAR) on the raw last-layer output
        asgd: bool = True,  # allow NT-ASGD (the NTASGDSwitch callback decides when)
        plateau_factor: float | None = None,  # e.g. 0.25: divide lr by 4 when val/loss plateaus
        plateau_patience: int = 0,
    ):  # pragma: no mutate block (save_hyperparameters reads a frame named __init__; mutmut renames it)
        super().__init__()
        # a checkpoint stores what the model is (hyper_parameters["model"]), never how it ran
        self.save_hyperparameters(ignore=["vocab", "run"])
        self.automatic_optimization = False
        self.vocab = list(vocab)
        self.backbone_cfg = BackboneConfig(**model)
        self.model = RNNLanguageModel(len(self.vocab), self.backbone_cfg, **(run or {}))
        self.asgd_active = False
        self._hidden: dict[str, Hidden | None] = {"train": None, "val": None, "test": None}
        self.nll = torch.nn.ModuleDict({stage: SumMetric() for stage in ("val", "test")})
        self.count = torch.nn.ModuleDict({stage: SumMetric() for stage in ("val", "test")})
        self.val_ppl_best = MinMetric()
        self._raw_weights: dict[str, Tensor] | None = None
        self._resumed_hidden = False
        self._epoch_done = False  # the last training batch of the epoch has been seen

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> LanguageModelingTask:
        """Lightning's loader. ``vocab`` is an argument of the module that the checkpoint keeps beside
        its hyperparameters (data, not configuration): read from there unless given."""
        if "vocab" not in kwargs:
            vocab = read_checkpoint(checkpoint_path).get("vocab")
            if vocab is None:
                raise CheckpointError(f"{checkpoint_path}: no vocabulary: not a checkpoint written by task=lm")
            kwargs["vocab"] = vocab
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    @classmethod
    def from_language_model(cls, loaded: LoadedLM, run: dict, **data: Any) -> LanguageModelingTask:
        """The task around an exported model (``eval.py task=lm ckpt_path=<model folder>``): its
        backbone and weights, the corpus's vocabulary (``data["vocab"]``), which must be the model's."""
        module = cls(model=asdict(loaded.config), run=run, **data)
        module.check_vocabulary(loaded.vocab)
        module.model.load_state_dict(loaded.model.state_dict())
        return module

    def check_vocabulary(self, stored: list[str]) -> None:
        """The model's vocabulary ``stored`` must be the corpus's, word for word."""
        if list(stored) != self.vocab:
            raise ValueError(
                f"the model's vocabulary ({len(stored)} words) differs from this corpus's "
                f"({len(self.vocab)} words): resume or evaluate it with the corpus it was trained on "
                "(task.datamodule.corpus)"
            )

    # ----------------------------------------------------------------- forward / loss
    def forward(self, tokens: Tensor, hidden: Hidden | None = None):
        return self.model(tokens, hidden)

    def _carried_hidden(self, stage: str, batch_size: int) -> Hidden:
        hidden = self._hidden[stage]
        if hidden is None or hidden[0][0].size(0) != batch_size:
            hidden = self.model.init_hidden(batch_size)
        return detach_hidden(hidden)

    # ----------------------------------------------------------------- training
    def on_train_epoch_start(self) -> None:
        # AWD-LSTM resets the state at every epoch start; a run resumed mid-epoch keeps the
        # state it restored from the checkpoint
        if not self._resumed_hidden:
            self._hidden["train"] = None
        self._resumed_hidden = False

    def progress_items(self, batch: dict) -> tuple[int, str]:
        """What the progress log counts per batch: tokens."""
        return int(batch["target"].numel()), "tokens"

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        optimizer = self.optimizers()
        self._epoch_done = batch_idx + 1 >= self.trainer.num_training_batches
        tokens, targets = batch["input"], batch["target"]
        out = self.model(tokens, self._carried_hidden("train", tokens.size(1)))
        self._hidden["train"] = out.hidden
        raw_loss = F.cross_entropy(out.logits.reshape(-1, out.logits.size(-1)), targets.reshape(-1))
        if not torch.isfinite(raw_loss):
            # stop before the update: the weights and every checkpoint written so far stay good
            raise FloatingPointError(
                f"non-finite training loss ({raw_loss.item()}) at global step {self.global_step} "
                f"(epoch {self.current_epoch}, batch {batch_idx}); the checkpoints already written are "
                "intact: lower task.module.lr or task.module.clip and resume from the last one"
            )
        loss = raw_loss
        if self.hparams.alpha:
            loss = loss + self.hparams.alpha * out.outputs[-1].pow(2).mean()
        if self.hparams.beta:
            last = out.raw_outputs[-1]
            loss = loss + self.hparams.beta * (last[1:] - last[:-1]).pow(2).mean()

        base_lrs = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:  # AWD-LSTM: longer segments take larger steps
            group["lr"] = group["lr"] * float(batch["lr_scale"])
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.hparams.clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.clip, gradient_clip_algorithm="norm")
        optimizer.step()
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr

        batch_size = tokens.size(1)
        self.log("train/loss", raw_loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)
        self.log("train/lr", base_lrs[0], on_step=False, on_epoch=True, batch_size=batch_size)
        return loss

    # ----------------------------------------------------------------- evaluation
    def _eval_step(self, stage: str, batch: dict) -> None:
        tokens, targets = batch["input"], batch["target"]
        out = self.model(tokens, self._carried_hidden(stage, tokens.size(1)))
        self._hidden[stage] = out.hidden
        nll = F.cross_entropy(out.logits.reshape(-1, out.logits.size(-1)).float(), targets.reshape(-1), reduction="sum")
        self.nll[stage].update(nll)
        self.count[stage].update(torch.tensor(float(targets.numel()), device=nll.device))

    def _eval_epoch_end(self, stage: str) -> float:
        loss = (self.nll[stage].compute() / self.count[stage].compute()).item()
        self.nll[stage].reset()
        self.count[stage].reset()
        self.log(f"{stage}/loss", loss, sync_dist=False)  # already summed over ranks by torchmetrics
        self.log(f"{stage}/ppl", math.exp(min(loss, 50.0)), prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._hidden["val"] = None
        self._swap_in_averaged_weights()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        loss = self._eval_epoch_end("val")
        if not self.trainer.sanity_checking:
            self.val_ppl_best.update(torch.tensor(math.exp(min(loss, 50.0))))
            self.log("val/ppl_best", self.val_ppl_best.compute())
            self._step_plateau_scheduler(loss)
        self._swap_out_averaged_weights()

    def on_test_epoch_start(self) -> None:
        self._hidden["test"] = None
        self._swap_in_averaged_weights()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")
        self._swap_out_averaged_weights()

    # ----------------------------------------------------------------- optimisers
    def _make_optimizer(self, kind: str) -> torch.optim.Optimizer:
        hp = self.hparams
        params = self.model.parameters()
        if kind == "asgd":
            return torch.optim.ASGD(params, lr=hp.lr, t0=0, lambd=0.0, weight_decay=hp.weight_decay)
        if kind == "sgd":
            return torch.optim.SGD(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if kind == "adam":
            return torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        raise ValueError(f"task.module.optimizer must be 'sgd' or 'adam', got {kind!r}")

    def configure_optimizers(self):
        optimizer = self._make_optimizer("asgd" if self.asgd_active else self.hparams.optimizer)
        if self.hparams.plateau_factor:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=self.hparams.plateau_factor, patience=self.hparams.plateau_patience
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        return optimizer

    def _step_plateau_scheduler(self, val_loss: float) -> None:
        # Manual optimisation: Lightning does not step schedulers for us.
        schedulers = self.lr_schedulers()
        if schedulers is not None and not self.asgd_active:
            schedulers.step(val_loss)

    @property
    def can_switch_to_asgd(self) -> bool:
        return self.hparams.asgd and self.hparams.optimizer == "sgd" and not self.asgd_active

    def switch_to_asgd(self) -> None:
        """NT-ASGD: replace SGD by ASGD over every parameter (the decoder's bias included)."""
        self.asgd_active = True
        self.trainer.optimizers = [self._make_optimizer("asgd")]
        self.print(f"epoch {self.current_epoch}: switching to averaged SGD (NT-ASGD)")

    # ----------------------------------------------------------------- averaged weights
    def _averaged_weights(self) -> dict[str, Tensor] | None:
        if not self.asgd_active or not self.trainer.optimizers:
            return None
        optimizer = self.trainer.optimizers[0]
        if not isinstance(optimizer, torch.optim.ASGD):
            return None
        averaged = {}
        for name, param in self.model.named_parameters():
            state = optimizer.state.get(param, {})
            if "ax" in state and int(state.get("step", 0)) > 0:
                averaged[name] = state["ax"]
        return averaged or None

    def _swap_in_averaged_weights(self) -> None:
        """NT-ASGD evaluates (and saves) the averaged weights, as the official code does."""
        averaged = self._averaged_weights() if self.trainer.state.fn == "fit" else None
        if averaged is None or self._raw_weights is not None:
            return
        self._raw_weights = {}
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, ax in averaged.items():
                self._raw_weights[name] = params[name].detach().clone()
                params[name].copy_(ax)

    def _swap_out_averaged_weights(self) -> None:
        if self._raw_weights is None:
            return
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, raw in self._raw_weights.items():
                params[name].copy_(raw)
        self._raw_weights = None

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["vocab"] = list(self.vocab)
        checkpoint["asgd_active"] = self.asgd_active
        # what an exact mid-epoch resume needs beyond Lightning's own state: the carried hidden
        # state and the RNG that draws the dropout masks
        train_hidden = None if self._epoch_done else self._hidden["train"]
        checkpoint["train_hidden"] = None if train_hidden is None else [[h.detach().cpu(), c.detach().cpu()] for h, c in train_hidden]
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        # "state_dict" holds the averaged weights (what evaluation uses); the raw ones are kept so
        # that a resumed run continues training exactly where it stopped. Inside a validation the
        # average is already swapped into the model (so into "state_dict"), the raw weights aside.
        if self._raw_weights is not None:
            checkpoint["raw_state_dict"] = {**checkpoint["state_dict"], **self._as_state(self._raw_weights)}
        elif averaged := self._averaged_weights():
            checkpoint["raw_state_dict"] = dict(checkpoint["state_dict"])
            checkpoint["state_dict"].update(self._as_state(averaged))

    def _as_state(self, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        """Parameters by name as state_dict entries (copies); a tied decoder is the embedding."""
        state = {f"model.{name}": weight.detach().clone() for name, weight in weights.items()}
        if self.backbone_cfg.tie_weights and "model.embedding.weight" in state:
            state["model.decoder.weight"] = state["model.embedding.weight"]
        return state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if checkpoint.get("vocab") is not None:
            self.check_vocabulary(checkpoint["vocab"])
        self.asgd_active = bool(checkpoint.get("asgd_active", False))
        # LightningModule.trainer raises when no Trainer is attached, which is the case in
        # Lightning's own load_from_checkpoint: ask the attribute behind it
        fitting = self._trainer is not None and self._trainer.state.fn == "fit"
        if fitting:
            if checkpoint.get("train_hidden") is not None:
                device = next(self.model.parameters()).device
                self._hidden["train"] = [(h.to(device), c.to(device)) for h, c in checkpoint["train_hidden"]]
                self._resumed_hidden = True
            if "torch_rng_state" in checkpoint:
                torch.set_rng_state(checkpoint["torch_rng_state"])
        if "raw_state_dict" in checkpoint and fitting:
            checkpoint["state_dict"] = checkpoint["raw_state_dict"]


# ----------------------------------------------------------------- the NT-ASGD switch (conf/task/lm.yaml)
class NTASGDSwitch(pl.Callback):
    """Non-monotonically triggered ASGD (Merity et al. 2018), as in the official ON-LSTM code.

    After each validation, switch SGD to ASGD when the validation loss is worse than the best of
    all validations except the last ``nonmono`` ones. Runs in ``on_validation_end``, after the
    module has logged ``val/loss`` and before ModelCheckpoint (which Lightning runs last) saves.
    """

    def __init__(self, nonmono: int = 5, monitor: str = "val/loss"):
        self.nonmono = nonmono
        self.monitor = monitor
        self.history: list[float] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: LanguageModelingTask) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        # the best of all validations but the last `nonmono` ones (all of them when nonmono == 0)
        earlier = self.history[: len(self.history) - self.nonmono]
        if pl_module.can_switch_to_asgd and len(self.history) > self.nonmono and value > min(earlier):
            pl_module.switch_to_asgd()
        self.history.append(value)

    def state_dict(self) -> dict:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict["history"])
