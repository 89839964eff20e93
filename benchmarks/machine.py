"""What the benchmarks share: the header they print (machine, software, the command that made the
table) and interleaved timing."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from collections.abc import Callable

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def code_commit() -> str:
    """The checkout's commit, ``+dirty`` when tracked files differ from it (a table names the code it timed)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def header(device: str = "cpu") -> str:
    lines = [
        f"- date {date.today().isoformat()}, code at commit {code_commit()}",
        f"- command: `{' '.join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv)}`",
        f"- machine: {platform.platform()}, {os.cpu_count()} logical CPUs, {cpu_model()}",
        f"- torch {torch.__version__}, threads {torch.get_num_threads()}, python {platform.python_version()}",
    ]
    if device == "cuda" and torch.cuda.is_available():
        lines.append(f"- GPU: {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})")
    try:
        load = os.getloadavg()
        lines.append(f"- load average at start: {load[0]:.2f} (a shared machine makes timings noisy)")
    except OSError:
        pass
    return "\n".join(lines)


def synchronizer(device: str) -> Callable[[], None]:
    """What makes a timing wait for the device: ``torch.cuda.synchronize`` on CUDA (kernels run
    asynchronously there), nothing on a CPU."""
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def parse_repeats(doc: str, default: int) -> int:
    """``--repeats`` of a benchmark script that takes no other option (its docstring's first line
    as the help)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=default)
    return parser.parse_args().repeats


def print_title(title: str, device: str = "cpu") -> None:
    """A benchmark table's title and the header that says where and how it was made."""
    print(f"# {title}\n")
    print(header(device) + "\n")


def timed(fn: Callable[[], object], sync: Callable[[], None] = lambda: None) -> float:
    """Seconds one call of ``fn`` takes, ``sync`` (``synchronizer(device)``) run before and after."""
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def interleaved_medians(
    paths: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 2,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Median seconds of each path over ``repeats`` rounds, every round running each path once (so
    noise from other processes hits them alike), after ``warmup`` untimed rounds. ``sync`` runs
    before and after each timed call (``synchronizer(device)``).

    The order of the paths rotates by one each round: what a path leaves behind (the allocator's
    heap, caches) changes the speed of the path after it by several percent on the 2-core
    machine, so no path always follows the same one."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = timed(paths[name], sync)
            if round_ >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(ts) for name, ts in times.items()}
