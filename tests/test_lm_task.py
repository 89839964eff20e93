"""The language-modeling task end to end on real PTB slices: learning, exact evaluation, resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from torch.nn import functional as F

import train as entry
from datamodules.text_corpus import TextCorpusDataModule, batchify, segment_schedule
from tasks.checkpoints import load_language_model
from tests.conftest import DATA_DIR, ROOT, TINY_MODEL, requires_data

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


def test_vocabulary_and_token_counts_match_the_data_readme():
    dm = TextCorpusDataModule(str(DATA_DIR))
    assert len(dm.vocab) == 10000
    assert (dm.splits.train.numel(), dm.splits.valid.numel(), dm.splits.test.numel()) == (929589, 73760, 82430)


def test_short_run_lowers_validation_perplexity(make_cfg):
    cfg = make_cfg([*SMALL_RUN, "+trainer.limit_train_batches=30", "+trainer.limit_val_batches=10", "test=false",
                    "trainer.num_sanity_val_steps=10", "task.module.lr=20"])
    metrics = entry.train(cfg)
    # vocabulary of 10,000 words: an untrained model sits near 10,000
    assert metrics["val/ppl"] < 3000


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


def _hand_perplexity(model, stream: torch.Tensor, batch_size: int, bptt: int) -> float:
    data = batchify(stream, batch_size)
    hidden, total, count = None, 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, data.size(0) - 1, bptt):
            length = min(bptt, data.size(0) - 1 - start)
            out = model(data[start : start + length], hidden)
            hidden = out.hidden
            target = data[start + 1 : start + 1 + length]
            total += F.cross_entropy(out.logits.reshape(-1, out.logits.size(-1)), target.reshape(-1), reduction="sum").item()
            count += target.numel()
    return math.exp(total / count)


def test_task_perplexity_equals_a_hand_loop_over_the_whole_split(make_cfg):
    cfg = make_cfg([*SMALL_RUN, "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "test=false",
                    "task.datamodule.eval_batch_size=40"])
    metrics = entry.train(cfg)
    # last.ckpt holds the weights the end-of-epoch validation used
    lm = load_language_model(Path(cfg.paths.output_dir, "checkpoints", "last.ckpt"))
    dm = TextCorpusDataModule(str(DATA_DIR))
    # the whole validation split, every token once, hidden state carried across segments
    expected = _hand_perplexity(lm.model, dm.splits.valid, batch_size=40, bptt=20)
    assert metrics["val/ppl"] == pytest.approx(expected, rel=1e-4)


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

    from tasks.callbacks import NTASGDSwitch

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


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")))
def test_every_experiment_config_runs_one_batch(make_cfg, experiment):
    if experiment == "evidence_parsing":
        pytest.skip("parses with the LMs of a finished evidence_lm sweep: tests/test_evidence_configs.py")
    cfg = make_cfg([f"experiment={experiment}", "debug=fdr"])
    with open_dict(cfg):
        cfg.trainer.enable_model_summary = False
    entry.train(cfg)
