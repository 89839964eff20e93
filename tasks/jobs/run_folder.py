"""The one module that knows what a run folder holds and where; everyone else asks it.

A run folder is what one job (``python train.py``, ``python eval.py``, or one job of a sweep)
leaves behind::

    .hydra/config.yaml      the composed config, as Hydra saved it (interpolations unresolved)
    .hydra/overrides.yaml   the command line's overrides
    .hydra/hydra.yaml       Hydra's own config (the job's name "train"/"eval", its number in a sweep)
    csv/metrics.csv         every logged metric, one row per logging step (logger=csv)
    done.json               written last, atomically, when the job finished: its final metrics,
                            when, the code's commit, the machine (absent: unfinished)
    checkpoints/            last.ckpt (the state a run continues from), best.ckpt (or epoch_NNN.ckpt:
                            the best by the task's metric), initial.ckpt (the weights before the
                            first update), best_cpuNNNmin.ckpt (the best at a CPU-time mark)
    tables/                 a task's result tables, each as NAME.csv and NAME.md
    figures/                a task's figures, NAME.png
    parsing/                a parsing run's test trees of the chosen layer: trees_layer{k}.tsv (bracketed,
                            beside the gold ones) and trees.html (the same trees drawn, induced beside
                            gold, with each sentence's F1: a page that opens from disk)
    train.log               the job's log (Hydra's job logging, named by the entry: eval.log for eval.py)

A run's *record* is the small part of it that says what ran and what came out (the Hydra files,
``csv/metrics.csv``, ``done.json``, the tables' CSVs): :func:`copy_record` keeps it where the
checkpoints cannot go (the evidence report reads records committed under ``docs/evidence/runs``).

The offline tools (``tasks.reports``) import this module, so it imports nothing heavy: no torch,
no Lightning.
"""

from __future__ import annotations

import csv
import filecmp
import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

CONFIG = Path(".hydra") / "config.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"
HYDRA = Path(".hydra") / "hydra.yaml"
METRICS = Path("csv") / "metrics.csv"
DONE = "done.json"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"
INITIAL_CHECKPOINT = "initial.ckpt"
TABLES = "tables"
FIGURES = "figures"
PARSING = "parsing"
TREE_PAGE = "trees.html"


# ------------------------------------------------------------------------------ what Hydra wrote
def is_run_folder(folder: str | Path) -> bool:
    return (Path(folder) / CONFIG).is_file()


def run_folders(path: str | Path) -> list[Path]:
    """``path`` itself when it is a run folder, else the run folders directly inside it (a sweep's
    jobs), sorted; a FileNotFoundError naming ``path`` when there is none."""
    path = Path(path)
    if is_run_folder(path):
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run or multirun folder")
    found = sorted(p for p in path.iterdir() if is_run_folder(p))
    if not found:
        raise FileNotFoundError(f"{path}: holds no run folder (none has {CONFIG.as_posix()})")
    return found


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def read_config(folder: str | Path) -> dict | None:
    """The composed config as saved (``${...}`` interpolations left as text); None when absent."""
    return _yaml(Path(folder) / CONFIG)


def config_value(folder: str | Path, key: str) -> Any:
    """One value of the saved config, ``key`` dotted, interpolations resolved; None when the
    folder has no config or the config no such key."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        return None
    return OmegaConf.select(OmegaConf.load(path), key)


def read_overrides(folder: str | Path) -> list[str]:
    return list(_yaml(Path(folder) / OVERRIDES) or [])


def log_path(folder: str | Path, job_name: str = "train") -> Path:
    """The job's log: ``train.log`` (``eval.log`` for ``eval.py``: Hydra names it by the job)."""
    return Path(folder) / f"{job_name}.log"


def job_info(folder: str | Path) -> dict:
    """Hydra's ``hydra.job`` node of the run (``name``: the entry script, ``num``: its number in a
    sweep); empty when the folder has no hydra.yaml."""
    return ((_yaml(Path(folder) / HYDRA) or {}).get("hydra") or {}).get("job") or {}


# ------------------------------------------------------------------------------ metrics
def metrics_path(folder: str | Path) -> Path:
    return Path(folder) / METRICS


def read_metrics(folder: str | Path) -> list[dict[str, float]]:
    """The rows of ``csv/metrics.csv``, each with the metrics it logged (empty cells left out);
    no rows when the run logged no CSV."""
    path = metrics_path(folder)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


# ------------------------------------------------------------------------------ the done marker
def done_path(folder: str | Path) -> Path:
    return Path(folder) / DONE


def read_done(folder: str | Path) -> dict | None:
    """The record ``done.json`` holds, None when the run has not finished; a damaged file raises
    ``json.JSONDecodeError``."""
    path = done_path(folder)
    return json.loads(path.read_text()) if path.is_file() else None


def finished_metrics(folder: str | Path) -> dict[str, float] | None:
    """The metrics a finished run stored, or None when the folder holds no finished run."""
    path = done_path(folder)
    try:
        record = read_done(folder)
        return None if record is None else {str(k): float(v) for k, v in record["metrics"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{path}: not a run record written by this project ({err}); delete it to run this job again"
        ) from None


def write_done(folder: str | Path, metrics: dict[str, float], commit: str, machine: dict[str, str],
               started: float) -> Path:
    """Write ``done.json``: the run's final metrics, when it finished, how long its last attempt
    took (from ``started``, a ``time.time()``), the code's commit and the machine. Through a
    temporary file, so that a job killed while writing it counts as unfinished."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    record = {
        "finished": now.isoformat(timespec="seconds"),
        "wall_seconds_last_attempt": round(now.timestamp() - started, 1),
        "commit": commit,
        "machine": machine,
        "metrics": {k: float(v) for k, v in sorted(metrics.items())},
    }
    tmp = folder / f".{DONE}.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, done_path(folder))
    return done_path(folder)


# ------------------------------------------------------------------------------ checkpoints
def checkpoints_dir(folder: str | Path) -> Path:
    return Path(folder) / CHECKPOINTS


def last_checkpoint_path(folder: str | Path) -> Path:
    return checkpoints_dir(folder) / LAST_CHECKPOINT


def last_checkpoint(folder: str | Path) -> Path | None:
    """``checkpoints/last.ckpt`` when the run wrote one (an interrupted run continues from it)."""
    path = last_checkpoint_path(folder)
    return path if path.is_file() else None


def run_of_checkpoint(path: str | Path) -> Path | None:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/NAME.ckpt``), None when it lies elsewhere."""
    parent = Path(path).resolve().parent
    return parent.parent if parent.name == CHECKPOINTS and is_run_folder(parent.parent) else None


def best_checkpoint_file(folder: str | Path) -> Path | None:
    """The best checkpoint by the task's metric that training kept (the ModelCheckpoint callback keeps
    one, named by ``callbacks.model_checkpoint.filename``: ``best.ckpt``, ``epoch_003.ckpt``); None
    when the run kept none, or several match."""
    name = config_value(folder, "callbacks.model_checkpoint.filename")
    if not name:
        return None
    pattern = re.sub(r"\{[^}]*\}", "*", str(name)) + ".ckpt"  # epoch_{epoch:03d} -> epoch_*.ckpt
    found = sorted(checkpoints_dir(folder).glob(pattern))
    return found[0] if len(found) == 1 else None


def tested_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint whose test metrics a finished training run (train=true test=true) recorded in
    ``done.json``: its best checkpoint (training tests that one); None when the run tested none."""
    if not (config_value(folder, "train") and config_value(folder, "test")):
        return None
    return best_checkpoint_file(folder)


def best_validation(folder: str | Path) -> dict[str, float] | None:
    """The metrics of the validation whose weights the best checkpoint holds: the first row of
    ``csv/metrics.csv`` with the best value of the checkpoint callback's ``monitor`` (``mode`` min or
    max), that metric's stage only (``val/``), the running bests (``*_best``) left out. None when the
    log holds no value of it."""
    monitor = config_value(folder, "callbacks.model_checkpoint.monitor")
    mode = config_value(folder, "callbacks.model_checkpoint.mode") or "min"
    rows = [row for row in read_metrics(folder) if monitor and monitor in row]
    if not rows:
        return None
    best = (min if mode == "min" else max)(rows, key=lambda row: row[monitor])  # the first of equal values
    stage = monitor.split("/")[0] + "/"
    return {k: v for k, v in best.items() if k.startswith(stage) and not k.endswith("_best")}


def cpu_mark_checkpoint_name(minutes: float) -> str:
    """The copy of the best checkpoint kept at ``minutes`` of CPU time: ``best_cpu040min.ckpt``."""
    return f"best_cpu{minutes:03g}min.ckpt"


# ------------------------------------------------------------------------------ tables and figures
def file_name(key: str) -> str:
    """A logged table's or figure's key as a file name: ``test/acc_by_ops`` -> ``test_acc_by_ops``."""
    return key.replace("/", "_").replace(" ", "_")


def figure_path(folder: str | Path, key: str) -> Path:
    return Path(folder) / FIGURES / f"{file_name(key)}.png"


def table_path(folder: str | Path, key: str) -> Path:
    """The CSV file of a logged table (its markdown copy is beside it, ``.md``)."""
    return Path(folder) / TABLES / f"{file_name(key)}.csv"


def read_table(folder: str | Path, key: str) -> list[dict[str, str]]:
    """The rows of a table the run logged, as text; no rows when it logged none by that key."""
    path = table_path(folder, key)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def fmt(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return Path(path)


def write_table(folder: str | Path, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[Path, str]:
    """A table as ``tables/NAME.csv`` and ``tables/NAME.md``; (the markdown file, its text)."""
    path = table_path(folder, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(path, columns, rows)
    text = markdown_table(columns, rows)
    md_path = path.with_suffix(".md")
    md_path.write_text(text)
    return md_path, text


# ------------------------------------------------------------------------------ records
def record_files(folder: str | Path) -> list[Path]:
    """The files of a run's record that exist, relative to the folder: the Hydra files, the
    metrics, ``done.json`` and the tables' CSVs (not checkpoints, logs or figures)."""
    folder = Path(folder)
    fixed = [p for p in (CONFIG, OVERRIDES, HYDRA, METRICS, Path(DONE)) if (folder / p).is_file()]
    tables = sorted(p.relative_to(folder) for p in (folder / TABLES).glob("*.csv")) if (folder / TABLES).is_dir() else []
    return fixed + tables


class RecordConflict(ValueError):
    """A finished run's record that differs from the copy kept of it."""


def copy_record(folder: str | Path, dest: str | Path) -> bool:
    """Copy the record of the run in ``folder`` to ``dest`` (made if needed); True when something
    was copied. A finished run's record never changes: when ``dest`` already holds a finished record,
    it is left alone if identical and a :class:`RecordConflict` naming both folders if not (a
    different run under the same name); an unfinished run's copy is brought up to date."""
    folder, dest = Path(folder), Path(dest)
    if not is_run_folder(folder):
        raise FileNotFoundError(f"{folder}: not a run folder (no {CONFIG.as_posix()})")
    files = record_files(folder)
    if done_path(dest).is_file():
        differing = [f for f in files if not (dest / f).is_file() or not filecmp.cmp(folder / f, dest / f, shallow=False)]
        if differing:
            raise RecordConflict(
                f"{dest} holds the finished record of a run, and {folder} differs from it in "
                f"{', '.join(p.as_posix() for p in differing)}: a finished record is never replaced; "
                "move one of them away if they are different runs")
        return False
    for relative in files:
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / relative, target)
    return True


# ------------------------------------------------------------------------------ parsing trees
def trees_path(folder: str | Path, parser: str) -> Path:
    """The test trees of one parser (``layer2``) beside the gold ones: ``parsing/trees_layer2.tsv``."""
    return Path(folder) / PARSING / f"trees_{parser}.tsv"


def tree_page_path(folder: str | Path) -> Path:
    """The page that draws a parsing run's test trees (``onlstm.parsing.tree_page``): ``parsing/trees.html``."""
    return Path(folder) / PARSING / TREE_PAGE
