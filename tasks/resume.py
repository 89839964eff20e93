"""Runs that can be started again: a finished run folder is skipped, an interrupted one continues.

With ``resume=true`` a run trains in a folder that is fixed in advance (a sweep's
``hydra.sweep.dir``/``subdir`` naming each job by its overrides, or ``hydra.run.dir``) instead of
a fresh timestamped one, so running the same command again finds its earlier work:

- ``done.json`` in the folder: the run finished; its stored metrics are returned, nothing runs;
- ``checkpoints/last.ckpt`` (an interrupted training run): training continues from it in the same
  folder (weights, optimiser, data position, carried hidden state, RNG, time budget);
- neither: the run starts.

Every run, with or without ``resume``, writes ``done.json`` when it ends without an error: its
metrics, when it finished and the code's commit. The file is written atomically, so a run killed
while writing it counts as unfinished.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("onlstm.train")

DONE_FILE = "done.json"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def finished_metrics(run_dir: str | Path) -> dict[str, float] | None:
    """The metrics a finished run stored, or None when the folder holds no finished run."""
    path = Path(run_dir) / DONE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        return {str(k): float(v) for k, v in record["metrics"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{path}: not a run record written by this project ({err}); delete it to run this job again"
        ) from None


def last_checkpoint(run_dir: str | Path) -> Path | None:
    path = Path(run_dir) / LAST_CHECKPOINT
    return path if path.is_file() else None


# The checkout this code runs from (train.py, tasks/, onlstm/ sit at its top). Not paths.root_dir:
# PROJECT_ROOT may send the run folders to another checkout or disk, whose commit says nothing
# about the code that ran.
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def code_commit(root: str | Path = SOURCE_ROOT) -> str:
    """The commit checked out at ``root`` (by default the code this process runs), with ``+dirty``
    when tracked files differ from it; "unknown" when ``root`` is not the top of a git checkout
    (an installed package inside some other repository's folder counts as unknown too)."""
    root = Path(root).resolve()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        toplevel = git("rev-parse", "--show-toplevel")
        if not toplevel or Path(toplevel).resolve() != root:
            return "unknown"
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) if commit else "unknown"


def machine() -> dict[str, str]:
    """Where the run computed: torch's version, the GPU's name or the CPU's model, its threads."""
    import torch  # here, so that reading run folders (tasks.report) does not need torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        device = torch.cuda.get_device_name()
    else:
        device = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as handle:
                device = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    return {"torch": torch.__version__, "device": device, "threads": str(torch.get_num_threads())}


def mark_done(run_dir: str | Path, metrics: dict[str, float], commit: str, started: float) -> Path:
    """Write ``done.json`` (atomically): the run's final metrics, its date, the commit, the machine."""
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    record = {
        "finished": now.isoformat(timespec="seconds"),
        "wall_seconds_last_attempt": round(now.timestamp() - started, 1),
        "commit": commit,
        "machine": machine(),
        "metrics": {k: float(v) for k, v in sorted(metrics.items())},
    }
    tmp = folder / f".{DONE_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, folder / DONE_FILE)
    return folder / DONE_FILE
