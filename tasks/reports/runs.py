"""The run folders the evidence report reads: one :class:`RunRecord` per folder, read through
:mod:`tasks.jobs.run_folder`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from tasks.jobs import run_folder


@dataclass
class RunRecord:
    """What a run folder records (:mod:`tasks.jobs.run_folder`), as the report reads it."""

    folder: Path
    config: dict
    record: dict | None
    history: list[dict[str, float]] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    entry: str | None = None  # the script that ran it (Hydra's job name: "train" or "eval")

    @property
    def finished(self) -> bool:
        return self.record is not None

    @property
    def metrics(self) -> dict[str, float]:
        """The final metrics of done.json, the running best over validations
        (``<task.optimized_metric>_best``) read from the validation the best checkpoint holds
        (:func:`tasks.jobs.run_folder.best_validation`): runs of the code from before checkpoints
        kept the running best (``tasks.jobs.contract.RUNNING_BESTS_KEY``) restarted it when they
        resumed, so its last value could miss the validations before the stop."""
        return dict(self._metrics)

    @cached_property
    def _metrics(self) -> dict[str, float]:
        if not self.record:
            return {}
        metrics = dict(self.record["metrics"])
        metric = (self.config.get("task") or {}).get("optimized_metric")
        best = run_folder.best_validation(self.folder) or {}
        if f"{metric}_best" in metrics and metric in best:
            metrics[f"{metric}_best"] = best[metric]
        return metrics

    @property
    def best_restarted(self) -> bool:
        """Whether the running best the run recorded missed validations before a resume (see
        :attr:`metrics`): the report names such runs."""
        return bool(self.record) and self.metrics != dict(self.record["metrics"])

    @property
    def arch(self) -> str:
        return self.config["model"]["arch"]

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def kind(self) -> str:
        task = self.config["task"]["name"]
        if task == "lm" and "syneval" in (self.config.get("evaluate_after") or {}):
            return "syneval"
        return task

    @property
    def sweep_command(self) -> str | None:
        """The command that runs this run's sweep again (continuing it where it stopped)."""
        experiment = next((o for o in self.overrides if o.startswith("experiment=")), None)
        if experiment is None or self.entry is None:
            return None
        return f"python {self.entry}.py -m {experiment}"

    def last(self, key: str) -> float | None:
        values = [row[key] for row in self.history if key in row]
        return values[-1] if values else None

    def curve(self, x: str, y: str) -> list[tuple[float, float]]:
        """(x, y) of the rows that log both, one per step (a resumed run may repeat a step)."""
        by_step = {row.get("step"): (row[x], row[y]) for row in self.history if x in row and y in row}
        return [by_step[s] for s in sorted(by_step, key=lambda s: -1 if s is None else s)]

    def table(self, key: str) -> list[dict[str, str]]:
        """The rows of a table the run logged (``key`` as the task logged it, e.g. ``syneval/table3``)."""
        return run_folder.read_table(self.folder, key)


def read_run(folder: Path) -> RunRecord:
    return RunRecord(folder, run_folder.read_config(folder), run_folder.read_done(folder), run_folder.read_metrics(folder),
                     run_folder.read_overrides(folder), run_folder.job_info(folder).get("name"))


def load_runs(paths: Iterable[str | Path]) -> list[RunRecord]:
    """Every run folder given, or inside a given multirun folder."""
    return [read_run(folder) for path in paths for folder in run_folder.run_folders(path)]
