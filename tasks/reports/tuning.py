"""The report's recipe-selection section: the runs that chose the recipes' free settings (on
validation data only), which setting won, and whether the claims' runs use it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from omegaconf import OmegaConf

from tasks.reports.runs import RunRecord
from tasks.reports.sections import Section


def tuned_value(run: RunRecord) -> tuple[str, float | None]:
    """The metric a tuning run is judged by (its best over validations when logged) and its value."""
    metric = run.config["task"].get("optimized_metric", "")
    if f"{metric}_best" in run.metrics:
        return f"{metric}_best", run.metrics[f"{metric}_best"]
    return metric, run.metrics.get(metric)


def changed_settings(run: RunRecord) -> list[str]:
    return [o for o in run.overrides if not o.startswith(("experiment=", "test=", "hydra"))]


def same_setting(a: Any, b: Any) -> bool:
    """``1e-3`` on the command line and ``0.001`` in a config are one setting."""
    try:
        return math.isclose(float(a), float(b))
    except (TypeError, ValueError):
        return str(a) == str(b)


def recipe_check(task: str, tuning: Sequence[RunRecord], recipe_runs: Sequence[RunRecord]) -> str | None:
    """Which tuning run won on validation, and whether the claim's runs use its settings: the table
    alone would not show a recipe that kept a setting the tuning had since overturned."""
    finished = [r for r in tuning if r.finished and tuned_value(r)[1] is not None]
    if len(finished) < 2:
        return None
    settings = {r.folder: dict(o.split("=", 1) for o in changed_settings(r) if "=" in o) for r in finished}
    swept = sorted({k for s in settings.values() for k in s
                    if len({str(other.get(k)) for other in settings.values()}) > 1})
    maximise = finished[0].config["task"].get("monitor_mode", "max") == "max"
    best = (max if maximise else min)(finished, key=lambda r: tuned_value(r)[1])
    metric, value = tuned_value(best)
    chosen = " ".join(f"{k}={settings[best.folder][k]}" for k in swept)
    line = f"Best {task} setting by {metric} ({'highest' if maximise else 'lowest'}): {chosen} ({value:.4f})."
    if not recipe_runs:
        return line
    used = {k: sorted({str(OmegaConf.select(OmegaConf.create(r.config), k)) for r in recipe_runs}) for k in swept}
    if all(all(same_setting(v, settings[best.folder][k]) for v in used[k]) for k in swept):
        return line + f" The {task} runs above use it."
    return line + (f" The {task} runs above use " + " ".join(f"{k}={'/'.join(v)}" for k, v in used.items())
                   + ", not the best setting: their recipe predates this tuning.")


def tuning_section(runs: list[RunRecord], recipe_runs: Sequence[RunRecord] = ()) -> Section:
    section = Section("Recipe selection (validation data only)")
    rows = []
    for run in sorted(runs, key=lambda r: str(r.folder)):
        metric, best = tuned_value(run)
        rows.append([run.kind, " ".join(changed_settings(run)) or "(the experiment as written)",
                     metric, "-" if best is None else f"{best:.4f}", f"{run.last('time/cpu_minutes') or 0:.1f}",
                     "yes" if run.finished else "no", (run.record or {}).get("commit", "-")])
    section.table("tuning", ["task", "overrides", "metric", "value", "CPU minutes", "finished", "commit"], rows,
                  "Runs that chose the recipes' free settings; each was scored on validation data only.")
    for kind in sorted({r.kind for r in runs}):  # kind, not task name: a syneval LM is tuned as task=lm
        line = recipe_check(kind, [r for r in runs if r.kind == kind], [r for r in recipe_runs if r.kind == kind])
        if line:
            section.text.append(line + "\n")
    return section
