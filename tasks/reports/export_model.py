"""``onlstm-export``: a trained language model's checkpoint as a portable model folder.

    onlstm-export logs/lm/runs/<time>/checkpoints/epoch_012.ckpt onlstm-ptb/
    onlstm-export <run>/checkpoints/last.ckpt onlstm-ptb/ --force      (write into a folder that is not empty)
    python -m tasks.reports.export_model ...                           (the same, without the console script)

The folder (:mod:`onlstm.pretrained`: ``config.json``, ``model.safetensors``, ``vocab.txt``, and the
model card ``README.md``) loads with ``onlstm.RNNLanguageModel.from_pretrained(folder)`` and plain
PyTorch, and serves wherever a checkpoint of a language model does (``eval.py task=parsing|syneval|lm
ckpt_path=<folder>``, ``onlstm-parse <folder>``). The card (:mod:`onlstm.model_card`) is filled from
the checkpoint (optimizer steps) and, when it lies in a run folder (``<run>/checkpoints/``), from the
run (:mod:`tasks.jobs.run_folder`): the training data, the recipe (the command line's overrides), the
code's commit and the metrics, but only those computed on these weights: the run's test metrics
belong to the checkpoint it tested (its best), and so do the validation metrics of the validation
that made it the best; exporting another checkpoint (``last.ckpt``) gives no metrics, and the card
says why.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from onlstm import pretrained
from onlstm.checkpoints import language_model_of, read_checkpoint
from onlstm.model_card import ModelCardInfo
from tasks.jobs import run_folder

PROG = "onlstm-export"
# how the card names the corpora of conf/task/lm.yaml (task.datamodule.corpus)
CORPORA = {"ptb": "Penn Treebank, Mikolov's text", "wikitext-2": "WikiText-2"}


class ExportError(ValueError):
    """A problem with the command's input; the message names the file or folder and what to do."""


# ----------------------------------------------------------------------------- the target folder
def check_target(folder: Path, force: bool) -> None:
    """The folder must be new or empty, unless ``force``: an export never replaces files silently."""
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} is a file; give the folder to write the model into (it is made when missing)")
    if folder.is_dir() and not force:
        present = sorted(p.name for p in folder.iterdir())
        if present:
            shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
            raise ExportError(
                f"{folder} is not empty ({shown}); give a new or empty folder, or --force to write the model's "
                f"files ({', '.join((*pretrained.REQUIRED_FILES, pretrained.CARD_FILE))}) over those there"
            )


# ----------------------------------------------------------------------------- the card
def training_data(run: Path) -> str | None:
    """What the run trained on, from its config (``task.datamodule.corpus``, ``train_fraction``)."""
    corpus = run_folder.config_value(run, "task.datamodule.corpus")
    if not corpus:
        return None
    text = f"{CORPORA.get(corpus, corpus)}: {corpus}/train.txt under the data root"
    fraction = run_folder.config_value(run, "task.datamodule.train_fraction")
    if fraction is not None and float(fraction) < 1.0:
        text += f", the first {float(fraction):.4g} of its token stream (task.datamodule.train_fraction)"
    return text


def _same_file(a: Path | None, b: Path) -> bool:
    return a is not None and a.is_file() and os.path.samefile(a, b)


def checkpoint_metrics(run: Path, path: Path) -> tuple[dict[str, float], list[str]]:
    """The run's metrics that were computed on the weights of ``path``, and notes saying what they
    are of or why there are none."""
    finished = run_folder.finished_metrics(run)  # a damaged done.json: ValueError naming it
    if finished is None:
        return {}, [f"none recorded: the run ({run}) has not finished (no {run_folder.DONE})"]
    best, tested = run_folder.best_checkpoint_file(run), run_folder.tested_checkpoint(run)
    test = {k: v for k, v in finished.items() if k.startswith("test/")}
    if not _same_file(best, path):
        if best is None:
            other = "the run kept no best checkpoint"
        elif _same_file(tested, best) and test:
            other = f"its best checkpoint, checkpoints/{best.name}, which it tested: {', '.join(sorted(test))}"
        else:
            other = f"its best checkpoint, checkpoints/{best.name}"
        return {}, [f"these weights are checkpoints/{path.name}; the run's metrics are of other weights ({other}): "
                    "export that checkpoint to have them here"]
    metrics: dict[str, float] = {}
    notes = []
    validation = run_folder.best_validation(run)
    if validation:
        metrics.update(validation)
        notes.append(f"{', '.join(sorted(validation))}: the validation at which the run kept this checkpoint as its best "
                     f"({run_folder.METRICS.as_posix()})")
    else:
        notes.append(f"validation metrics: not recorded (the run has no {run_folder.METRICS.as_posix()})")
    if _same_file(tested, path) and test:
        metrics.update(test)
        notes.append(f"{', '.join(sorted(test))}: the run's test of this checkpoint ({run_folder.DONE})")
    else:
        notes.append("test metrics: the run did not test this checkpoint")
    return metrics, notes


def card_info(path: Path, source: str, steps: int | None) -> ModelCardInfo:
    """What the card says of the checkpoint at ``path`` (``source``: as the user named it)."""
    run = run_folder.run_of_checkpoint(path)
    if run is None:
        note = (f"none recorded: {source} does not lie in a run folder (<run>/checkpoints/), so the training run's "
                "data, recipe, metrics and commit are unknown")
        return ModelCardInfo(steps=steps, source=source, metrics_notes=[note])
    metrics, notes = checkpoint_metrics(run, path)
    record = run_folder.read_done(run) or {}
    return ModelCardInfo(
        data=training_data(run),
        overrides=run_folder.read_overrides(run),
        steps=steps,
        metrics=metrics,
        metrics_notes=notes,
        commit=record.get("commit"),
        source=source,
    )


# ----------------------------------------------------------------------------- command
def export(checkpoint: str, folder: str, force: bool = False, out=None) -> Path:
    """Write the model folder of ``checkpoint`` into ``folder``; every check comes before any file is written."""
    path, target = Path(checkpoint), Path(folder)
    contents = read_checkpoint(path)  # missing, a folder, truncated, pickled code: CheckpointError naming it
    loaded = language_model_of(contents, path)  # not a task=lm checkpoint (a logic model): CheckpointError
    check_target(target, force)
    steps = contents.get("global_step")
    info = card_info(path, checkpoint, int(steps) if steps is not None else None)
    del contents
    loaded.model.save_pretrained(target, vocab=loaded.vocab, card=info)
    files = ", ".join((*pretrained.REQUIRED_FILES, pretrained.CARD_FILE))
    print(f"{PROG}: wrote {target} ({files}): {loaded.config.arch}, {len(loaded.vocab)} words, "
          f"{info.steps if info.steps is not None else 'unknown'} steps, {len(info.metrics)} metrics on the card", file=out or sys.stdout)
    print(f"load it with onlstm.RNNLanguageModel.from_pretrained({str(target)!r}), or give it to eval.py "
          f"(ckpt_path={target}) and onlstm-parse in place of the checkpoint", file=out or sys.stdout)
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write a task=lm checkpoint as a portable model folder (config.json, model.safetensors, vocab.txt, "
        "README.md model card) that RNNLanguageModel.from_pretrained loads with plain PyTorch.",
    )
    parser.add_argument("checkpoint", help="a task=lm checkpoint, e.g. logs/lm/runs/<time>/checkpoints/epoch_012.ckpt")
    parser.add_argument("folder", help="the folder to write (made when missing; must be empty unless --force)")
    parser.add_argument("--force", action="store_true", help="write into a folder that is not empty, replacing the model's files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        export(args.checkpoint, args.folder, args.force)
    except (ValueError, OSError) as error:  # ExportError, CheckpointError, a damaged done.json, a folder we may not write
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
