"""One table per multirun: ``<hydra.sweep.dir>/summary.csv`` and ``summary.md``.

A Hydra callback (registered in ``conf/hydra/default.yaml``), run by Hydra in the launching
process once every job of ``python train.py -m ...`` has ended. Jobs may have run in other
processes or machines (joblib, submitit), so the table is read from the job folders
(:mod:`tasks.jobs.run_folder`), never from in-memory return values: each job's overrides (what it
ran with), its config (the metric it optimised) and ``done.json`` (written when it finished:
metrics, wall time, commit). A job without ``done.json`` is
listed as unfinished. When the Optuna sweeper ran, its ``optimization_results.yaml`` (best
parameters and value) is added to the markdown.

Imports stay light (no torch): Hydra builds the callback before the sweep starts.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from tasks.jobs import run_folder

log = logging.getLogger("onlstm.train")

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
OPTUNA_RESULTS = "optimization_results.yaml"


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def job_row(folder: Path, sweep_dir: Path) -> dict[str, Any]:
    """What one job folder says about its job; unfinished jobs have ``status`` "unfinished"."""
    config = run_folder.read_config(folder) or {}
    overrides = run_folder.read_overrides(folder)
    task = config.get("task") or {}
    metric = task.get("optimized_metric") or ""
    row: dict[str, Any] = {
        "job": run_folder.job_info(folder).get("num", ""),
        "overrides": " ".join(overrides),
        "status": "unfinished",
        "optimized_metric": metric,
        "value": "",
        "monitor_mode": task.get("monitor_mode") or "",
        "wall_s": "",
        "commit": "",
        "folder": str(folder.relative_to(sweep_dir)),
        "metrics": {},
    }
    try:
        record = run_folder.read_done(folder)
    except json.JSONDecodeError as err:
        row["status"] = f"unreadable {run_folder.DONE} ({err}): delete it and run the job again"
        return row
    if record is not None:
        metrics = {str(k): float(v) for k, v in record.get("metrics", {}).items()}
        row.update(status="finished", wall_s=record.get("wall_seconds_last_attempt", ""),
                   commit=record.get("commit", ""), metrics=metrics)
        row["value"] = metrics.get(metric, "")
    return row


def job_folders(sweep_dir: Path) -> list[Path]:
    return [p for p in sweep_dir.iterdir() if run_folder.is_run_folder(p)]


def summarize(sweep_dir: str | Path) -> tuple[Path, Path] | None:
    """Write ``summary.csv`` and ``summary.md`` into ``sweep_dir``; None when it holds no job folder."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return None
    rows = [job_row(folder, sweep_dir) for folder in job_folders(sweep_dir)]
    if not rows:
        return None
    rows.sort(key=lambda r: (r["job"] if isinstance(r["job"], int) else 10**9, r["folder"]))
    test_keys = sorted({k for r in rows for k in r["metrics"] if k.startswith("test/")})
    # what differs between the jobs (the swept values); the overrides every job shares are listed once
    shared = set.intersection(*(set(r["overrides"].split()) for r in rows))
    for row in rows:
        row["swept"] = " ".join(o for o in row["overrides"].split() if o not in shared)
    best = _best(rows)
    columns = ["job", "swept", "status", "optimized_metric", "value", "best", *test_keys, "wall_s", "commit", "folder", "overrides"]
    records = []
    for row in rows:
        record = {k: row.get(k, "") for k in columns}
        record["best"] = "yes" if row is best else ""
        record.update({k: row["metrics"].get(k, "") for k in test_keys})
        records.append(record)

    csv_path = sweep_dir / SUMMARY_CSV
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)

    md_path = sweep_dir / SUMMARY_MD
    lines = [f"# Sweep {sweep_dir}", "", f"{len(rows)} jobs, {sum(r['status'] == 'finished' for r in rows)} finished. "
             "`value` is the job's `task.optimized_metric`; `best` marks the best finished job by it "
             "(`task.monitor_mode`); `wall_s` is the last attempt's wall time.", ""]
    if shared:
        lines += ["Overrides of every job: `" + " ".join(o for o in rows[0]["overrides"].split() if o in shared) + "`", ""]
    shown = columns[:-1]  # the full overrides: in the CSV
    lines.append("| " + " | ".join(shown) + " |")
    lines.append("|" + "---|" * len(shown))
    for record in records:
        lines.append("| " + " | ".join(_cell(record[k]) for k in shown) + " |")
    optuna = _read_yaml(sweep_dir / OPTUNA_RESULTS)
    if optuna:
        lines += ["", f"Optuna's best trial ({OPTUNA_RESULTS}): value {_cell(optuna.get('best_value'))} with "
                  + ", ".join(f"`{k}={_cell(v)}`" for k, v in (optuna.get("best_params") or {}).items())]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def _best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in rows if isinstance(r["value"], float)]
    if not scored:
        return None
    pick = max if scored[0]["monitor_mode"] == "max" else min
    return pick(scored, key=lambda r: r["value"])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|")


class SweepSummary(Callback):
    """Hydra callback: the sweep's summary table once all its jobs have ended."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        written = summarize(sweep_dir)
        if written is None:
            log.warning("sweep summary: no job folder in %s", sweep_dir)
            return
        log.info("sweep summary: %s and %s", *written)
