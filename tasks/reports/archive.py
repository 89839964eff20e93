"""Keep the records of a tree of sweeps where checkpoints cannot go (a git checkout):

    python -m tasks.reports.archive logs/evidence/round2 docs/evidence/runs/round2

copies the record (:func:`tasks.jobs.run_folder.copy_record`: config, overrides, metrics,
``done.json``, tables) of every run folder of every sweep under the first folder
(``<sweep>/<job>/``) to the same place under the second. A finished record already kept is never
replaced (a different one under its name is an error); unfinished runs' copies are refreshed, so
running it again as the sweeps go on keeps the copies current. The evidence report reads the copies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tasks.jobs import run_folder


def archive(source: str | Path, dest: str | Path) -> list[Path]:
    """Copy every run record under ``source`` (sweep folders holding job folders) to ``dest``; the
    run folders whose record was copied."""
    source, dest = Path(source), Path(dest)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such folder of sweeps")
    sweeps = sorted(p for p in source.iterdir() if p.is_dir() and not run_folder.is_run_folder(p))
    runs = [job for sweep in sweeps for job in sorted(sweep.iterdir()) if run_folder.is_run_folder(job)]
    if not runs:
        raise FileNotFoundError(f"{source}: holds no sweep of run folders (<sweep>/<job>/.hydra/config.yaml)")
    return [job for job in runs if run_folder.copy_record(job, dest / job.relative_to(source))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.reports.archive", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a folder of sweeps (e.g. logs/evidence/round2)")
    parser.add_argument("dest", help="where the records go (e.g. docs/evidence/runs/round2)")
    args = parser.parse_args(argv)
    copied = archive(args.source, args.dest)
    print(f"{len(copied)} run record(s) copied to {args.dest}" + "".join(f"\n  {p}" for p in copied))


if __name__ == "__main__":
    main()
