"""The language-modeling task end to end on real PTB slices: learning, exact evaluation, resume."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import open_dict
from torch.nn import functional as F
from torch.utils.data import DataLoader

import train as entry
from datamodules.text_corpus import TextCorpusDataModule, batchify, segment_schedule
from onlstm.lm import LMOutput
from onlstm.checkpoints import load_language_model
from tasks.language_modeling import LanguageModelingTask
from tests.helpers import (
    DATA_DIR,
    EVAL_ONLY_EXPERIMENTS,
    ROOT,
    SYNEVAL_GROUPS,
    SYNEVAL_ITEMS_ONE_PER_CONDITION,
    TINY_MODEL,
    requires_data,
)

pytestmark = requires_data("ptb/train.txt")

SMALL_RUN = [
    "task=lm",
    *TINY_MODEL,
    "task.datamodule.train_fraction=0.02",
    "task.datamodule.bptt=20",
    "trainer.max_epochs=1",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "callbacks.model_summary=null",
]


def test_segment_schedule_covers_the_stream_in_order():
    schedule = segment_schedule(rows=1000, bptt=70, seed=1, epoch=0)
    starts = [s for s, _, _ in schedule]
    assert starts[0] == 0 and starts == sorted(starts)
    assert all(s + n == s2 for (s, n, _), s2 in zip(schedule, starts[1:]))
    assert schedule[-1][0] + schedule[-1][1] >= 1000 - 2
    assert all(n >= 1 and nominal >= 5 for _, n, nominal in schedule)
    assert segment_schedule(1000, 70, 1, 0) == schedule  # a pure function of (seed, epoch)
    assert segment_schedule(1000, 70, 1, 1) != schedule
    fixed = segment_schedule(rows=141, bptt=70, seed=1, epoch=0, variable=False)
    assert fixed == [(0, 70, 70), (70, 70, 70)]


def test_batchify_columns_are_contiguous_slices():
    data = batchify(torch.arange(23), 4)
    assert data.shape == (5, 4)
    assert data[:, 1].tolist() == [5, 6, 7, 8, 9]


@pytest.mark.parametrize(
    "corpus,words,tokens",
    [("ptb", 10_000, (929_589, 73_760, 82_430)), ("wikitext-2", 33_278, (2_088_628, 217_646, 245_569))],
)
def test_vocabulary_and_token_counts_match_the_data_readme(corpus, words, tokens):
    """Guards the reader: one <eos> per line (blank lines too), the vocabulary of the training
    split; the counts are /work/shared/data/README.md's."""
    if not (DATA_DIR / corpus / "train.txt").exists():
        pytest.skip(f"{corpus} not found under {DATA_DIR}")
    dm = TextCorpusDataModule(str(DATA_DIR), corpus=corpus)
    assert len(dm.vocab) == words
    assert (dm.splits.train.numel(), dm.splits.valid.numel(), dm.splits.test.numel()) == tokens


def _successor_corpus(root: Path, words: int = 40, line: int = 12) -> Path:
    """A corpus where context decides: each line is ``line`` consecutive words w_k, w_k+1, ...
    (mod ``words``) from a random start. Returns the data root (``<root>/ptb/{train,valid,test}.txt``)."""
    rng = np.random.default_rng(0)
    folder = root / "ptb"
    folder.mkdir(parents=True)
    for split, lines in (("train", 2000), ("valid", 200), ("test", 200)):
        starts = rng.integers(0, words, lines)
        text = "".join(" ".join(f"w{(k + i) % words}" for i in range(line)) + "\n" for k in starts)
        (folder / f"{split}.txt").write_text(text)
    return root


def test_short_run_learns_what_no_context_free_model_can(make_cfg, tmp_path):
    """Guards that the recipe (SGD, clipping, dropouts, AR/TAR, variable BPTT, carried state)
    learns from context. On the successor corpus (40 words, lines of 12 consecutive words, then
    <eos>) a context-free model scores at best the validation unigram entropy: <eos> is 1/13 of the
    tokens, the words 12/13 spread evenly, H = -(1/13) ln(1/13) - (12/13) ln(12/(13 * 40)) = 3.68
    nats, perplexity 39.5. With context every word but a line's first is predictable (ideal
    perplexity 40 ** (1/13) = 1.33). The bar, 8, is 5x under what a context-free model can reach."""
    data = _successor_corpus(tmp_path / "data")
    cfg = make_cfg([*SMALL_RUN, f"paths.data_dir={data}", "task.datamodule.train_fraction=1.0",
                    "model.emb_size=32", "model.hidden_size=64", "model.chunk_size=8",
                    "model.dropout=0.1", "model.dropouth=0.1", "model.dropouti=0.1", "model.dropoute=0.05",
                    "model.wdrop=0.1", "task.datamodule.batch_size=16", "trainer.max_epochs=2", "test=false",
                    "trainer.num_sanity_val_steps=0"])  # fmt: skip
    metrics = entry.train(cfg)
    assert metrics["val/ppl"] < 8.0, metrics  # 4.0 measured


@pytest.mark.slow
def test_run_learns_far_below_unigram_perplexity(make_cfg):
    cfg = make_cfg(
        [
            *SMALL_RUN,
            "model.emb_size=128",
            "model.hidden_size=256",
            "model.chunk_size=8",
            "model.dropout=0.1",
            "model.dropouth=0.1",
            "model.dropouti=0.1",
            "model.wdrop=0.0",
            "task.module.lr=20",
            "task.datamodule.train_fraction=0.1",
            "task.datamodule.bptt=35",
            "task.datamodule.eval_batch_size=20",
            "trainer.max_epochs=3",
            "+trainer.limit_val_batches=30",
            "test=false",
        ]
    )
    unigram = TextCorpusDataModule(str(DATA_DIR)).unigram_perplexity()  # about 685
    metrics = entry.train(cfg)
    assert metrics["val/ppl"] < 0.75 * unigram
    assert Path(cfg.paths.output_dir, "checkpoints", "last.ckpt").is_file()
    assert Path(cfg.paths.output_dir, "csv", "metrics.csv").is_file()


def _hand_perplexity(model, stream: torch.Tensor, batch_size: int, bptt: int) -> tuple[float, float]:
    """exp(total NLL / tokens) over the split, and the wrong answer exp(mean of per-batch NLL means)."""
    data = batchify(stream, batch_size)
    hidden, total, count, means = None, 0.0, 0, []
    model.eval()
    with torch.no_grad():
        for start in range(0, data.size(0) - 1, bptt):
            length = min(bptt, data.size(0) - 1 - start)
            out = model(data[start : start + length], hidden)
            hidden = out.hidden
            target = data[start + 1 : start + 1 + length]
            nll = F.cross_entropy(out.logits.reshape(-1, out.logits.size(-1)), target.reshape(-1), reduction="sum")
            total += nll.item()
            count += target.numel()
            means.append(nll.item() / target.numel())
    return math.exp(total / count), math.exp(sum(means) / len(means))


def test_task_perplexity_equals_a_hand_loop_over_the_whole_split(make_cfg, tmp_path):
    """Guards exact evaluation: val/ppl is exp(total NLL / total tokens) over every token of the
    validation split once, hidden state carried. The successor corpus's validation split (200
    lines of 13 tokens = 2,600) in 10 columns is 260 rows; bptt 43 cuts them into 6 segments of
    43 rows and a last one of 1 row (10 tokens), which a mean of per-batch means would weigh 1/7
    instead of 10/2,590: the test checks that this wrong answer lies over 100 tolerances away, then
    that the task is within the tolerance (1e-5; float32 sums)."""
    data = _successor_corpus(tmp_path / "data")
    cfg = make_cfg([*SMALL_RUN, f"paths.data_dir={data}", "task.datamodule.train_fraction=1.0",
                    "+trainer.limit_train_batches=5", "test=false", "trainer.num_sanity_val_steps=0",
                    "task.datamodule.eval_batch_size=10", "task.datamodule.bptt=43"])  # fmt: skip
    metrics = entry.train(cfg)
    # last.ckpt holds the weights the end-of-epoch validation used
    lm = load_language_model(Path(cfg.paths.output_dir, "checkpoints", "last.ckpt"))
    valid = TextCorpusDataModule(str(data)).splits.valid
    assert valid.numel() == 2600 and 260 - 1 == 6 * 43 + 1
    expected, mean_of_batch_means = _hand_perplexity(lm.model, valid, batch_size=10, bptt=43)
    rel = 1e-5
    assert abs(mean_of_batch_means / expected - 1) > 100 * rel
    assert metrics["val/ppl"] == pytest.approx(expected, rel=rel)


def test_resume_from_checkpoint_equals_uninterrupted_run(make_cfg):
    common = [*SMALL_RUN, "+trainer.limit_train_batches=8", "+trainer.limit_val_batches=5", "test=false",
              "model.dropout=0.3", "model.wdrop=0.2"]
    full = make_cfg([*common, "trainer.max_epochs=2"], subdir="full")
    full_metrics = entry.train(full)
    first = make_cfg([*common, "trainer.max_epochs=1"], subdir="first")
    entry.train(first)
    resumed = make_cfg(
        [*common, "trainer.max_epochs=2", f"ckpt_path={Path(first.paths.output_dir, 'checkpoints', 'last.ckpt')}"],
        subdir="resumed",
    )
    resumed_metrics = entry.train(resumed)
    a = torch.load(Path(full.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=True)
    b = torch.load(Path(resumed.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=True)
    assert a["global_step"] == b["global_step"] and a["epoch"] == b["epoch"]
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=0, atol=0)
    assert resumed_metrics["val/ppl"] == full_metrics["val/ppl"]


class _FakeLM:
    def __init__(self):
        self.can_switch_to_asgd = True

    def switch_to_asgd(self):
        self.can_switch_to_asgd = False


def test_ntasgd_rule_is_the_official_one():
    """Switch when the loss is worse than the best of all but the last `nonmono` validations."""
    from types import SimpleNamespace

    from tasks.language_modeling import NTASGDSwitch

    losses = [5.0, 4.0, 3.0, 3.5, 3.4, 3.3, 3.2]  # with nonmono=3: at 3.2, the best of [5, 4, 3] is 3.0 < 3.2
    callback, module, switched = NTASGDSwitch(nonmono=3), _FakeLM(), []
    for index, loss in enumerate(losses):
        trainer = SimpleNamespace(sanity_checking=False, callback_metrics={"val/loss": torch.tensor(loss)})
        callback.on_validation_end(trainer, module)
        if not module.can_switch_to_asgd and not switched:
            switched.append(index)
    # official: len(history) > nonmono and loss > min(history[:-nonmono]); at index 4 the history is
    # [5, 4, 3, 3.5], min of the first one is 5 -> no; index 5: min(5, 4) = 4 -> no; index 6: min(5, 4, 3) = 3 -> yes
    assert switched == [6]
    assert callback.state_dict()["history"] == pytest.approx(losses)


def test_asgd_checkpoint_holds_averaged_weights_and_raw_ones_for_resuming(make_cfg):
    cfg = make_cfg(
        [*SMALL_RUN, "trainer.max_epochs=3", "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=3",
         "+callbacks.force._target_=tests.fault_injection.ForceASGDSwitch", "test=false"]
    )
    entry.train(cfg)
    ckpt = torch.load(Path(cfg.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=True)
    assert ckpt["asgd_active"] is True
    state = ckpt["optimizer_states"][0]["state"]
    assert all("ax" in s for s in state.values())
    averaged, raw = ckpt["state_dict"], ckpt["raw_state_dict"]
    name = "model.stack.cells.0.hh.weight"
    assert not torch.equal(averaged[name], raw[name])  # evaluation uses the average, resuming the raw
    # the averaged weights are ASGD's running average of the iterates ("ax" in its state)
    ax = [s["ax"] for s in state.values()]
    assert any(torch.equal(averaged[name], a) for a in ax)
    # an evaluation task reads the averaged model
    lm = load_language_model(Path(cfg.paths.output_dir, "checkpoints", "last.ckpt"))
    torch.testing.assert_close(lm.model.stack.cells[0].hh.weight, averaged[name])


def test_resume_after_the_ntasgd_switch_equals_an_uninterrupted_run(make_cfg):
    """Guards resuming once averaged SGD has taken over: the checkpoint of epoch 2 (SGD in epoch 1,
    switched to ASGD after it, ASGD in epoch 2) resumed for a third epoch ends exactly where an
    uninterrupted 3-epoch run ends: same raw and averaged weights (ASGD's average included), same
    validation perplexity. A resume that restarted with SGD, or with a fresh average, differs."""
    common = [*SMALL_RUN, "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=3", "test=false",
              "model.dropout=0.3", "model.wdrop=0.2", "+callbacks.force._target_=tests.fault_injection.ForceASGDSwitch"]
    full = make_cfg([*common, "trainer.max_epochs=3"], subdir="full")
    full_metrics = entry.train(full)
    first = make_cfg([*common, "trainer.max_epochs=2"], subdir="first")
    entry.train(first)
    middle = torch.load(Path(first.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=True)
    assert middle["asgd_active"] is True and int(middle["optimizer_states"][0]["state"][0]["step"]) == 4
    resumed = make_cfg(
        [*common, "trainer.max_epochs=3", f"ckpt_path={Path(first.paths.output_dir, 'checkpoints', 'last.ckpt')}"],
        subdir="resumed",
    )
    resumed_metrics = entry.train(resumed)
    a = torch.load(Path(full.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=True)
    b = torch.load(Path(resumed.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=True)
    assert a["global_step"] == b["global_step"] == 12 and b["asgd_active"] is True
    for part in ("state_dict", "raw_state_dict"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            torch.testing.assert_close(b[part][key], a[part][key], rtol=0, atol=0, msg=f"{part} {key}")
    assert resumed_metrics["val/ppl"] == full_metrics["val/ppl"]


EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))

# metrics a one-batch run must report, per task
RUN_METRICS = {"lm": {"train/loss", "val/loss", "val/ppl", "test/ppl"}, "logic": {"train/loss", "val/acc", "test/acc"},
               "listops": {"train/loss", "val/acc", "test/acc"}}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_config_runs_one_batch(make_cfg, experiment):
    """Guards every experiment config: it composes, builds and runs one batch of fit, validation
    and test (fast_dev_run), and the run reports its task's metrics, finite. fast_dev_run skips
    ``evaluate_after``; the experiment that scores the syntactic suite after fitting on WikiText-2
    runs here one training batch (of 16 columns, not 128) and one validation batch, then the suite
    on the new checkpoint, one item per (file, condition): 72 items in 15 reporting groups (the data README)."""
    if experiment in EVAL_ONLY_EXPERIMENTS:
        pytest.skip("evaluates the checkpoints of a finished LM sweep with eval.py: tests/test_evidence_configs.py")
    if experiment == "syneval_wikitext2":
        overrides = ["trainer.max_epochs=1", "+trainer.limit_train_batches=1", "task.datamodule.batch_size=16",
                     "+trainer.limit_val_batches=1", "test=false", "evaluate_after.syneval.datamodule.limit_per_condition=1",
                     "trainer.enable_progress_bar=false", "~logger", "trainer.num_sanity_val_steps=0"]
    else:
        overrides = ["debug=fdr"]
    cfg = make_cfg([f"experiment={experiment}", *overrides])
    with open_dict(cfg):
        cfg.trainer.enable_model_summary = False
        if cfg.task.name == "listops":
            # its full data (40,000 generated training expressions, the 10,000 released ones) takes longer to
            # set up than any other experiment's whole batch: fewer expressions, smaller batches, the same code
            cfg.task.datamodule.update(train_count=500, val_count=50, generated_test_count=3, batch_size=16,
                                       eval_batch_size=32)
    metrics = entry.train(cfg)
    expected = {key for key in RUN_METRICS[cfg.task.name] if cfg.test or not key.startswith("test/")}
    if experiment == "syneval_wikitext2":
        expected |= {"test/acc", "test/items"}
    assert expected <= set(metrics), sorted(metrics)
    assert all(math.isfinite(metrics[key]) for key in expected)
    if experiment == "syneval_wikitext2":
        assert metrics["test/items"] == SYNEVAL_ITEMS_ONE_PER_CONDITION
        assert sum(key.count("/") == 2 and key.startswith("test/acc/") for key in metrics) == SYNEVAL_GROUPS


# ----------------------------------------------------------------------------- the training recipe
def _tiny_task(**kwargs) -> LanguageModelingTask:
    """A 1-layer LM task over a 5-word vocabulary, no dropout (so nothing random)."""
    model = {"emb_size": 4, "hidden_size": 8, "n_layers": 1, "chunk_size": 2, "dropout": 0.0, "dropouth": 0.0,
             "dropouti": 0.0, "dropoute": 0.0, "wdrop": 0.0}
    torch.manual_seed(0)
    return LanguageModelingTask(model=model, vocab=["a", "b", "c", "d", "<eos>"], **kwargs)


def _batch(rows: int, lr_scale: float = 1.0, columns: int = 2) -> dict:
    tokens = torch.arange(rows * columns).remainder(5).view(rows, columns)
    return {"input": tokens, "target": tokens.roll(-1, 0), "lr_scale": lr_scale}


def _fit_on(module: LanguageModelingTask, batches: list[dict], epochs: int = 1, callbacks=()) -> None:
    """Lightning's training loop over these batches (no validation, no checkpoint, no logger)."""
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         callbacks=list(callbacks))
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))


def _record_backward(module: LanguageModelingTask) -> list[float]:
    losses: list[float] = []
    backward = module.manual_backward

    def recording(loss, *args, **kwargs):
        losses.append(loss.item())
        return backward(loss, *args, **kwargs)

    module.manual_backward = recording
    return losses


def test_training_loss_is_cross_entropy_plus_ar_on_dropped_and_tar_on_raw_output():
    """Guards how the training loss is built: cross-entropy + alpha * mean(dropped last-layer
    output ** 2) (AR) + beta * mean((raw last-layer output[t+1] - [t]) ** 2) (TAR). The model
    returns known tensors: logits 0 over 5 words (CE = log 5); the dropped last output is 2
    everywhere (AR term 4); the raw last output is 0, 1, 3 over time (TAR term (1 + 4) / 2 = 2.5,
    while AR on it would be 10 / 3); the first layer's tensors are 100 (wrong layer: huge).
    With alpha = 2, beta = 1: log 5 + 8 + 2.5; swapped weights give log 5 + 4 + 5."""
    module = _tiny_task(alpha=2.0, beta=1.0)

    def known_outputs(tokens, hidden=None):
        zero = module.model.decoder.bias.sum() * 0.0  # in the graph, so that backward runs
        steps, batch = tokens.shape
        raw_last = torch.tensor([0.0, 1.0, 3.0]).view(3, 1, 1).expand(steps, batch, 4) + zero
        first = torch.full((steps, batch, 8), 100.0) + zero
        return LMOutput(torch.zeros(steps, batch, 5) + zero, module.model.init_hidden(batch), [first, raw_last],
                        [first, torch.full((steps, batch, 4), 2.0) + zero], None, None)

    module.model.forward = known_outputs
    losses = _record_backward(module)
    _fit_on(module, [_batch(rows=3)])
    assert losses == [pytest.approx(math.log(5) + 2.0 * 4.0 + 1.0 * 2.5, rel=1e-6)]


def test_learning_rate_is_scaled_by_segment_length_over_bptt_for_that_batch_only():
    """Guards AWD-LSTM's per-batch learning rate: lr * seq_len / bptt during the batch's step, the
    base lr again after it. The dataset gives lr_scale = nominal length / bptt (35 / 70 = 0.5 and
    140 / 70 = 2, the nominal length even when the segment is cut short at the end); the task
    steps with 30 * 2 = 60, then 30 * 0.5 = 15, and is back at 30 after each batch."""
    from datamodules.text_corpus import SegmentDataset

    segments = SegmentDataset(torch.arange(100).view(50, 2), [(0, 35, 35), (35, 14, 140)], bptt=70)
    assert [segments[i]["lr_scale"] for i in range(2)] == [0.5, 2.0]
    assert segments[1]["input"].shape == (14, 2)

    class LearningRates(pl.Callback):
        def __init__(self):
            self.at_step, self.after = [], []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.at_step.append(optimizer.param_groups[0]["lr"])

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.after.append(trainer.optimizers[0].param_groups[0]["lr"])

    module, lrs = _tiny_task(lr=30.0), LearningRates()
    _fit_on(module, [_batch(rows=4, lr_scale=2.0), _batch(rows=4, lr_scale=0.5)], callbacks=[lrs])
    assert lrs.at_step == [60.0, 15.0]
    assert lrs.after == [30.0, 30.0]


def test_hidden_state_is_carried_across_training_batches_and_reset_each_epoch():
    """Guards truncated BPTT: batch k + 1 starts from the (detached) hidden state batch k ended
    with, not from zeros; each epoch starts from zeros (AWD-LSTM). Two epochs of two batches."""
    module = _tiny_task()
    forward, seen = module.model.forward, []

    def recording(tokens, hidden=None):
        out = forward(tokens, hidden)
        seen.append((hidden, out.hidden))
        return out

    module.model.forward = recording
    _fit_on(module, [_batch(rows=3), _batch(rows=3)], epochs=2)
    assert len(seen) == 4
    for index, (given, _) in enumerate(seen):
        if index % 2 == 0:  # the first batch of an epoch: zeros
            assert all(not h.any() and not c.any() for h, c in given)
        else:  # the state the previous batch ended with (not zero), detached
            ended = seen[index - 1][1]
            assert all(h.abs().sum() > 0 for h, _ in ended)
            for (h, c), (h_end, c_end) in zip(given, ended):
                assert torch.equal(h, h_end) and torch.equal(c, c_end) and not h.requires_grad


def test_variable_bptt_lengths_follow_awd_lstm_distribution():
    """Guards the segment-length distribution: the nominal length is N(bptt, 5) with probability
    0.95 and N(bptt / 2, 5) otherwise, truncated to an int, at least 5. Over ~14,500 segments of
    bptt 70, the short mode's share is 0.05 within 5 binomial sd (0.009); the long mode's mean is
    70 - 0.5 (int() truncates) within 5 sd of a mean (0.21) and its sd 5 within 0.2. With bptt 8
    (modes 8 and 4, sd 5), no length is under 5 and a quarter or more are exactly 5."""
    lengths = np.array([nominal for _, _, nominal in segment_schedule(rows=1_000_001, bptt=70, seed=3, epoch=0)])
    short = lengths < (70 + 35) / 2  # the modes are 7 sd apart: the cut misclassifies ~2e-4
    n = lengths.size
    assert abs(short.mean() - 0.05) <= 5 * math.sqrt(0.05 * 0.95 / n)
    long = lengths[~short]
    assert abs(long.mean() - 69.5) <= 5 * 5 / math.sqrt(long.size)
    assert abs(long.std() - 5.0) < 0.2
    assert abs(lengths[short].mean() - 34.5) <= 5 * 5 / math.sqrt(short.sum())
    small = np.array([nominal for _, _, nominal in segment_schedule(rows=20_000, bptt=8, seed=3, epoch=0)])
    assert small.min() == 5 and (small == 5).mean() > 0.25


# ----------------------------------------------------------------------------- validation and optimisers
TINY_LM_MODEL = {"emb_size": 4, "hidden_size": 8, "n_layers": 1, "chunk_size": 2}


def validated(module: LanguageModelingTask, loss: float, sanity: bool = False) -> None:
    """One validation whose summed loss is ``loss`` per token, through the module's epoch-end hook."""
    module._trainer.sanity_checking = sanity
    module.nll["val"].update(torch.tensor(loss * 40.0))
    module.count["val"].update(torch.tensor(40.0))
    module.on_validation_epoch_end()


def test_validation_perplexity_its_best_and_the_plateau_rule(monkeypatch):
    """The Marvin & Linzen recipe's schedule (plateau_factor 0.25): SGD at lr, divided by 4 after a
    validation no better than the best, never stepped by the sanity check or once ASGD runs;
    val/ppl is exp(loss per token), capped at exp(50); val/ppl_best the best real validation's."""
    from types import SimpleNamespace

    module = LanguageModelingTask(model=TINY_LM_MODEL, vocab=["<eos>", "a", "b"], lr=30.0, plateau_factor=0.25,
                                  plateau_patience=0)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.SGD)
    assert (optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["weight_decay"]) == (30.0, 1.2e-6)
    assert (scheduler.mode, scheduler.factor, scheduler.patience) == ("min", 0.25, 0)
    module._trainer = SimpleNamespace(lr_scheduler_configs=[SimpleNamespace(scheduler=scheduler)], sanity_checking=False)
    logged = {}
    monkeypatch.setattr(module, "log", lambda name, value, **kw: logged.__setitem__(name, float(value)))

    validated(module, 0.5, sanity=True)  # the sanity check: logged, neither best nor a scheduler step
    assert logged == {"val/loss": 0.5, "val/ppl": pytest.approx(math.exp(0.5))}
    lrs = []
    for loss in (5.0, 6.0, 4.0, 60.0):
        validated(module, loss)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == [30.0, 7.5, 7.5, 1.875]
    assert logged["val/ppl"] == pytest.approx(math.exp(50.0))
    assert logged["val/ppl_best"] == pytest.approx(math.exp(4.0))
    module.asgd_active = True
    validated(module, 70.0)
    assert optimizer.param_groups[0]["lr"] == 1.875


@pytest.mark.parametrize("kind, expected", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)])
def test_the_optimiser_is_the_one_named_and_an_unknown_one_is_refused(kind, expected):
    module = LanguageModelingTask(model=TINY_LM_MODEL, vocab=["<eos>", "a"], optimizer=kind, lr=0.5, weight_decay=0.01)
    optimizer = module.configure_optimizers()
    assert type(optimizer) is expected
    (group,) = optimizer.param_groups
    assert (group["lr"], group["weight_decay"], len(group["params"])) == (0.5, 0.01, len(list(module.model.parameters())))
    module.asgd_active = True  # after the NT-ASGD switch (a resumed run): averaged SGD, no averaging delay
    asgd = module.configure_optimizers()
    assert type(asgd) is torch.optim.ASGD and asgd.defaults["t0"] == 0 and asgd.defaults["lambd"] == 0.0
    with pytest.raises(ValueError, match=r"^task.module.optimizer must be 'sgd' or 'adam', got 'rmsprop'$"):
        LanguageModelingTask(model=TINY_LM_MODEL, vocab=["<eos>", "a"], optimizer="rmsprop").configure_optimizers()


# ----------------------------------------------------------------------------- unit checks of the task's state: clipping,
# logged rate, NT-ASGD (switch rule, optimiser, averaged weights), checkpoint save/load, evaluation state
def _stub_trainer(fn: str = "fit", optimizers=(), sanity_checking: bool = False):
    from types import SimpleNamespace

    return SimpleNamespace(state=SimpleNamespace(fn=fn), optimizers=list(optimizers), sanity_checking=sanity_checking,
                           lr_scheduler_configs=[])


def test_gradients_are_clipped_to_total_norm_clip_and_left_alone_when_clip_is_zero():
    """AWD-LSTM clips the gradients' total 2-norm to ``clip`` before each step; clip=0 turns clipping
    off. The tiny model's first-batch gradient norm (about 0.15) is well over the clip used here, 0.02."""

    class Norms(pl.Callback):
        def __init__(self):
            self.norms = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    unclipped, clipped = Norms(), Norms()
    _fit_on(_tiny_task(clip=0.0), [_batch(rows=4)], callbacks=[unclipped])
    _fit_on(_tiny_task(clip=0.02), [_batch(rows=4)], callbacks=[clipped])
    assert unclipped.norms[0] > 0.1  # so that clipping at 0.02 shows
    assert clipped.norms == [pytest.approx(0.02, rel=1e-4)]


def test_train_lr_is_logged_once_per_epoch_as_the_base_rate_not_the_scaled_one():
    """``train/lr`` is the configured rate (30), not the rate of a batch scaled by seq_len / bptt
    (60 here), and an epoch-level value only (no ``train/lr_step``)."""
    module = _tiny_task(lr=30.0)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=DataLoader([_batch(rows=3, lr_scale=2.0)] * 2, batch_size=None))
    assert float(trainer.callback_metrics["train/lr"]) == 30.0
    assert not any(key.startswith("train/lr_") for key in trainer.callback_metrics), sorted(trainer.callback_metrics)


def test_ntasgd_switch_ignores_the_sanity_check_a_missing_metric_and_a_tie_and_defaults_to_nonmono_5():
    """The official rule is strict (switch when the loss is *worse than* the best of the earlier
    validations); the sanity check's validation is not a validation of the run; a run that logs no
    ``val/loss`` never switches; the default window is the official nonmono 5 on val/loss; a
    resumed switch continues from the history it saved."""
    from types import SimpleNamespace

    from tasks.language_modeling import NTASGDSwitch

    def validate(callback, module, loss, sanity=False, metric="val/loss"):
        callback.on_validation_end(SimpleNamespace(sanity_checking=sanity, callback_metrics={metric: torch.tensor(loss)}),
                                   module)

    callback, module = NTASGDSwitch(nonmono=1), _FakeLM()
    validate(callback, module, 1.0, sanity=True)  # would make every later loss a switch
    validate(callback, module, 4.0, metric="val/acc")
    assert callback.history == []
    for loss in (3.0, 2.0, 3.0):  # at the last: best of [3.0] is 3.0, a tie: no switch
        validate(callback, module, loss)
    assert module.can_switch_to_asgd and callback.history == [3.0, 2.0, 3.0]
    validate(callback, module, 3.5)  # best of [3, 2, 3] is 2 < 3.5
    assert not module.can_switch_to_asgd

    default, module = NTASGDSwitch(), _FakeLM()
    assert default.monitor == "val/loss"
    for index, loss in enumerate([1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]):  # more than 5 earlier ones: index 6 switches
        validate(default, module, loss)
        assert module.can_switch_to_asgd == (index < 6)

    resumed, module = NTASGDSwitch(nonmono=1), _FakeLM()
    resumed.load_state_dict({"history": [1.0, 2.0]})
    validate(resumed, module, 1.5)  # best of [1, 2] is 1 < 1.5
    assert not module.can_switch_to_asgd


@pytest.mark.parametrize("asgd, optimizer, active, expected", [(True, "sgd", False, True), (False, "sgd", False, False),
                                                                (True, "adam", False, False), (True, "sgd", True, False)])
def test_only_an_sgd_run_with_asgd_allowed_and_not_yet_switched_can_switch(asgd, optimizer, active, expected):
    module = LanguageModelingTask(model=TINY_LM_MODEL, vocab=["<eos>", "a"], optimizer=optimizer, asgd=asgd)
    module.asgd_active = active
    assert module.can_switch_to_asgd is expected


def test_averaged_sgd_uses_the_run_rate_and_weight_decay_over_every_parameter():
    module = LanguageModelingTask(model=TINY_LM_MODEL, vocab=["<eos>", "a"], lr=0.5, weight_decay=0.01)
    module.asgd_active = True
    asgd = module.configure_optimizers()
    (group,) = asgd.param_groups
    assert (group["lr"], group["weight_decay"], len(group["params"])) == (0.5, 0.01, len(list(module.model.parameters())))


def _asgd_after_three_steps(tie_weights: bool = True):
    """A task switched to averaged SGD (lr 0.5, no weight decay) after three steps of gradient 1
    everywhere: raw weights p0 - 1.5; torch's ASGD (t0 0) averages the iterates from the second on,
    (p0 - 1.0 + p0 - 1.5) / 2 = p0 - 1.25 (after one or two steps the average is the weights)."""
    module = LanguageModelingTask(model={**TINY_LM_MODEL, "tie_weights": tie_weights}, vocab=["<eos>", "a", "b"],
                                  lr=0.5, weight_decay=0.0)
    module.asgd_active = True
    start = {name: p.detach().clone() for name, p in module.model.named_parameters()}
    asgd = module._make_optimizer("asgd")
    for _ in range(3):
        for p in module.model.parameters():
            p.grad = torch.ones_like(p)
        asgd.step()
    module._trainer = _stub_trainer("fit", [asgd])
    return module, start


def test_validation_while_fitting_evaluates_asgds_average_then_restores_the_raw_weights():
    module, start = _asgd_after_three_steps()
    params = dict(module.model.named_parameters())
    module.on_validation_epoch_start()
    module.on_validation_epoch_start()  # a second swap-in must not take the average for the raw weights
    for name, p0 in start.items():
        torch.testing.assert_close(params[name].detach(), p0 - 1.25)
    module._swap_out_averaged_weights()
    for name, p0 in start.items():
        torch.testing.assert_close(params[name].detach(), p0 - 1.5)
    assert module._raw_weights is None
    module._trainer.state.fn = "validate"  # trainer.validate / test: the weights as loaded, no swap
    module.on_validation_epoch_start()
    module.on_test_epoch_start()
    assert module._raw_weights is None
    for name, p0 in start.items():
        torch.testing.assert_close(params[name].detach(), p0 - 1.5)


@pytest.mark.parametrize("tie_weights", [True, False])
@pytest.mark.parametrize("inside_validation", [False, True])
def test_asgd_checkpoint_state_dict_is_the_average_the_decoder_included_and_the_raw_one_is_kept(
        tie_weights, inside_validation):
    """The tied decoder weight is the embedding's average too (it is one parameter, listed once);
    an untied decoder has its own average. Saved inside a validation (the average swapped in), the
    raw weights are kept all the same: a run resumed from it trains on, not from the average."""
    module, start = _asgd_after_three_steps(tie_weights)
    if inside_validation:
        module.on_validation_epoch_start()
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    saved, raw = checkpoint["state_dict"], checkpoint["raw_state_dict"]
    for name, p0 in start.items():
        torch.testing.assert_close(saved[f"model.{name}"], p0 - 1.25)
        torch.testing.assert_close(raw[f"model.{name}"], p0 - 1.5)
    decoder = start["embedding.weight" if tie_weights else "decoder.weight"]
    torch.testing.assert_close(saved["model.decoder.weight"], decoder - 1.25)
    torch.testing.assert_close(raw["model.decoder.weight"], decoder - 1.5)
    assert checkpoint["asgd_active"] is True and checkpoint["vocab"] == ["<eos>", "a", "b"]


def test_checkpoint_keeps_the_carried_state_mid_epoch_and_none_after_the_epochs_last_batch():
    """A mid-epoch checkpoint holds the hidden state the next batch starts from; one written after
    the epoch's last batch holds none (the next epoch starts from zeros, AWD-LSTM)."""

    class Saves(pl.Callback):
        def __init__(self):
            self.saved = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            checkpoint = {"state_dict": {}}
            pl_module.on_save_checkpoint(checkpoint)
            self.saved.append((checkpoint, [(h.clone(), c.clone()) for h, c in pl_module._hidden["train"]]))

    module, saves = _tiny_task(), Saves()
    _fit_on(module, [_batch(rows=3), _batch(rows=3), _batch(rows=3)], callbacks=[saves])
    for (checkpoint, carried), last in zip(saves.saved, (False, False, True)):
        assert checkpoint["asgd_active"] is False and "raw_state_dict" not in checkpoint
        if last:
            assert checkpoint["train_hidden"] is None
        else:
            assert len(checkpoint["train_hidden"]) == len(carried) == 1
            for (h, c), (h_now, c_now) in zip(checkpoint["train_hidden"], carried):
                assert h.abs().sum() > 0 and torch.equal(h, h_now) and torch.equal(c, c_now)


def test_loading_restores_state_rng_and_raw_weights_when_fitting_only():
    """Resuming a fit (trainer.state.fn == "fit") restores the carried hidden state (kept at the
    next epoch start, reset at the one after), the RNG of the dropout masks and the raw (not
    averaged) weights; loading to evaluate keeps the averaged weights and touches neither state
    nor RNG. A checkpoint without ``asgd_active`` (older ones) is an SGD one; another vocabulary is refused."""
    vocab = ["<eos>", "a", "b"]
    hidden = [[torch.full((2, 4), 0.5), torch.full((2, 4), -0.5)]]
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    after_rng = torch.rand(3)

    def checkpoint():
        return {"state_dict": "averaged", "raw_state_dict": "raw", "vocab": list(vocab), "asgd_active": True,
                "train_hidden": hidden, "torch_rng_state": rng}

    module = LanguageModelingTask(model=TINY_LM_MODEL, vocab=vocab)
    module._trainer = _stub_trainer("fit")
    torch.manual_seed(7)
    loaded = checkpoint()
    module.on_load_checkpoint(loaded)
    assert torch.equal(torch.rand(3), after_rng)
    assert loaded["state_dict"] == "raw" and module.asgd_active is True
    assert module._resumed_hidden is True
    assert [(h.tolist(), c.tolist()) for h, c in module._hidden["train"]] == [(h.tolist(), c.tolist()) for h, c in hidden]
    module.on_train_epoch_start()  # the resumed epoch: the restored state carries on
    assert module._hidden["train"] is not None
    module.on_train_epoch_start()  # the next epoch: zeros
    assert module._hidden["train"] is None

    for fn in ("validate", "test"):
        module = LanguageModelingTask(model=TINY_LM_MODEL, vocab=vocab)
        module._trainer = _stub_trainer(fn)
        torch.manual_seed(7)
        expected_rng = torch.rand(3)
        torch.manual_seed(7)
        loaded = checkpoint()
        module.on_load_checkpoint(loaded)
        assert torch.equal(torch.rand(3), expected_rng)
        assert loaded["state_dict"] == "averaged" and module.asgd_active is True
        assert module._hidden["train"] is None and module._resumed_hidden is False

    old = checkpoint()
    del old["asgd_active"]
    module.on_load_checkpoint(old)
    assert module.asgd_active is False
    with pytest.raises(ValueError, match=r"the model's vocabulary \(2 words\) differs from this corpus's \(3 words\)"):
        module.on_load_checkpoint({**checkpoint(), "vocab": vocab[:2]})


def test_every_validation_and_test_starts_from_a_zero_state_and_the_best_perplexity_is_capped(monkeypatch):
    """Each validation (and test) scores the split from a zero hidden state: two validations of the
    same batch give the same loss, the model's cross-entropy from zeros; val/ppl_best caps the
    perplexity at exp(50) as val/ppl does."""
    module = _tiny_task()
    module.eval()
    module._trainer = _stub_trainer("validate")
    logged = {}
    monkeypatch.setattr(module, "log", lambda name, value, **kw: logged.__setitem__(name, float(value)))
    batch = _batch(rows=4)
    with torch.no_grad():
        logits = module.model(batch["input"]).logits
        expected = F.cross_entropy(logits.reshape(-1, 5), batch["target"].reshape(-1)).item()
    for stage in ("val", "val", "test", "test"):
        if stage == "val":
            module.on_validation_epoch_start()
            module.validation_step(batch, 0)
            module.on_validation_epoch_end()
        else:
            module.on_test_epoch_start()
            module.test_step(batch, 0)
            module.on_test_epoch_end()
        assert logged.pop(f"{stage}/loss") == pytest.approx(expected, rel=1e-6)
    module.val_ppl_best.reset()
    validated(module, 60.0)
    assert logged["val/ppl_best"] == pytest.approx(math.exp(50.0))
