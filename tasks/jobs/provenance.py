"""Where a run computed, for its ``done.json``: the commit of the code that ran and the machine."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

# The checkout this code runs from (train.py, tasks/, onlstm/ sit at its top). Not paths.root_dir:
# PROJECT_ROOT may send the run folders to another checkout or disk, whose commit says nothing
# about the code that ran.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


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
