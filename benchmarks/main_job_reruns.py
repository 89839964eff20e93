"""How far a rerun of the main job (``make train`` = ``experiment=ptb_cpu``) lands from another.

Runs ``python train.py experiment=ptb_cpu`` (seeded, a fixed number of optimizer steps) once per
``--threads`` entry, each in its own folder, and writes a table of what each run gave: optimizer
steps, best validation and test perplexity, wall minutes of the whole command, the load average
at its start. The README states the expected test perplexity and its tolerance from this table.

    python benchmarks/main_job_reruns.py --threads 2 2 1 1 --out benchmarks/results/main_job_reruns_cpu.md

Runs one after the other (a step budget makes the numbers independent of the machine's load; the
wall times are not, and say so with their load). Results go to ``logs/main_job_reruns/<n>_t<threads>``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import header  # noqa: E402  (after the sys.path line)
from tasks.jobs import run_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run_once(threads: int, folder: Path, extra: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_MODE": "offline"}
    load = os.getloadavg()[0]
    start = time.monotonic()
    subprocess.run([sys.executable, "train.py", "experiment=ptb_cpu", f"hydra.run.dir={folder}", f"threads={threads}",
                    "callbacks.progress_log.every_n_steps=200", *extra], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    record = run_folder.read_done(folder)
    metrics = record["metrics"]
    steps = max((row["step"] for row in run_folder.read_metrics(folder) if "step" in row), default=-1)
    return {"threads": threads, "steps": int(steps),
            "val_ppl_best": metrics.get("val/ppl_best", float("nan")), "test_ppl": metrics["test/ppl"],
            "wall_minutes": (time.monotonic() - start) / 60, "load": load, "commit": record["commit"],
            "device": record["machine"]["device"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 2, 1, 1], help="one run per entry")
    parser.add_argument("--out", type=Path, required=True, help="markdown table to write")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "logs" / "main_job_reruns")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run (e.g. trainer.max_steps=20 to try it)")
    args = parser.parse_args()
    if args.runs_dir.exists() and any(args.runs_dir.iterdir()):
        parser.error(f"{args.runs_dir} is not empty: move it away (its runs would be mixed with new ones)")
    rows = []
    for n, threads in enumerate(args.threads, start=1):
        rows.append(run_once(threads, args.runs_dir / f"{n}_t{threads}", args.overrides))
        print(f"run {n}: {rows[-1]}", file=sys.stderr)
    lines = ["# The main job, run again (`make train` = `python train.py experiment=ptb_cpu`)", "", header(), "",
             f"One run per row, one after the other, in `{args.runs_dir}`; extra overrides: "
             f"{' '.join(args.overrides) or 'none'}.", "",
             "| run | threads | optimizer steps | best validation ppl | test ppl | wall minutes (whole command) "
             "| load average at start |", "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {n} | {r['threads']} | {r['steps']} | {r['val_ppl_best']:.2f} | {r['test_ppl']:.2f} | "
              f"{r['wall_minutes']:.1f} | {r['load']:.2f} |" for n, r in enumerate(rows, start=1)]
    lines += ["", f"Code: {rows[0]['commit']}; machine: {rows[0]['device']}."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
