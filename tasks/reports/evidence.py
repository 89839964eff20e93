"""The evidence report: the paper's four claims tested from run folders, and nothing else.

    python -m tasks.reports.evidence logs/evidence/lm logs/evidence/parsing logs/evidence/logic \\
        logs/evidence/syneval --out docs/evidence

writes ``docs/evidence.md`` (a summary of the verdicts, then per claim: a table of mean +- sd over
seeds with the per-seed values, and a verdict line with the numbers that decide it), ``docs/evidence/*.csv`` (one per
table) and ``docs/evidence/*.png`` (figures). Each argument is a multirun folder (its job folders
are read) or a single run folder. Only finished runs (``done.json``, :mod:`tasks.jobs.run_folder`) enter
the tables; unfinished ones are listed with how far they got.

How the report is made, one module per job: reading the run folders (:mod:`tasks.reports.runs`),
the statistics behind every verdict (:mod:`tasks.reports.statistics`: a t-test at the 5% level
over seeds), one section per claim (:mod:`tasks.reports.claims`), the recipe selection
(:mod:`tasks.reports.tuning`); this module puts them together. A claim whose precondition (at
least ``MIN_SEEDS`` finished seeds per model, logic models that learned their training
distribution) is not met is "not shown".

With ``--plan docs/preregistration.md`` the runs of each pre-registered question go to that
question's section (:mod:`tasks.reports.questions`: only runs of the planned code, seeds and
overrides count, and the verdict is the plan's one-sided test); ``--round1`` quotes the summary of
the exploratory round's report beside it. ``runs.csv`` beside the figures has one row per run with
every final metric as a number.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tasks.jobs.run_folder import write_csv
from tasks.reports.claims import lm, logic, parsing, syneval
from tasks.reports.preregistration import Plan, read_plans, sweep_of
from tasks.reports.questions import listops, logic_confirmation, parsing_curve
from tasks.reports.runs import RunRecord, load_runs
from tasks.reports.sections import Section
from tasks.reports.tuning import tuning_section

SECTIONS = {"lm": lm.section, "parsing": parsing.section, "logic": logic.section, "syneval": syneval.section}


@dataclass(frozen=True)
class Round2Inputs:
    """What the pre-registered questions read besides the runs: the plan, the checkout whose history
    holds its commits, and the artifacts the logic question sets beside its runs."""

    plan_file: Path
    repo: Path
    round1: Path | None = None  # the exploratory round's report (its folder of CSVs beside it)
    paper_config: Path | None = None  # experiment=logic_paper as Hydra composes it (--cfg job)
    paper_epoch: Path | None = None  # benchmarks/results/logic_paper_epoch_cpu.md


def question_section(plan: Plan, runs: list[RunRecord], inputs: Round2Inputs, tuning: list[RunRecord]) -> Section:
    """The section of one pre-registered question (``tuning``: the runs that chose recipes; a
    question reads its own)."""
    if plan.name == "logic_confirmation":
        round1_csv = inputs.round1.with_suffix("") / "logic_accuracy_by_operators.csv" if inputs.round1 else None
        paper = yaml.safe_load(inputs.paper_config.read_text()) if inputs.paper_config else None
        return logic_confirmation.section(plan, runs, inputs.repo, round1_csv, paper, inputs.paper_epoch)
    if plan.name == "parsing_curve":
        return parsing_curve.section(plan, runs, inputs.repo)
    if plan.name == "listops":
        return listops.section(plan, runs, inputs.repo, tuning)
    raise ValueError(f"{inputs.plan_file}: plan {plan.name!r} has no report section (tasks/reports/questions)")


def exploratory_summary(report: Path) -> list[str]:
    """The summary bullets of an earlier report (its ``## Summary`` section)."""
    lines = report.read_text().splitlines()
    start = lines.index("## Summary") + 1
    return [line for line in lines[start:] if line.startswith("- ")]


def runs_table(runs: list[RunRecord]) -> tuple[list[str], list[list]]:
    """One row per run: where it ran, what it was, and every final metric as a number of its own
    column (empty where a run has no such metric)."""
    metrics = sorted({k for r in runs for k in r.metrics})
    columns = ["sweep", "run", "task", "experiment", "model", "seed", "weights", "finished", "commit", "cpu_minutes",
               "steps", *metrics]
    rows = []
    for run in sorted(runs, key=lambda r: (r.folder.parent.name, r.folder.name)):
        experiment = next((o.split("=", 1)[1] for o in run.overrides if o.startswith("experiment=")), "")
        rows.append([run.folder.parent.name, run.folder.name, run.kind, experiment, run.arch, run.seed,
                     run.config.get("lm_weights", ""), run.record["finished"] if run.finished else "",
                     (run.record or {}).get("commit", ""), run.last("time/cpu_minutes") or "",
                     "" if run.last("step") is None else int(run.last("step")),
                     *(run.metrics.get(k, "") for k in metrics)])
    return columns, rows


def provenance(runs: list[RunRecord]) -> list[str]:
    lines = []
    finished = [r for r in runs if r.finished]
    dates = sorted(r.record["finished"][:10] for r in finished)
    if dates:
        lines.append(f"Runs finished between {dates[0]} and {dates[-1]}.")
    sweeps: dict[str, list[str]] = {}
    for run in runs:
        if run.sweep_command and str(run.folder.parent) not in sweeps.setdefault(run.sweep_command, []):
            sweeps[run.sweep_command].append(str(run.folder.parent))
    if sweeps:
        lines.append("Sweeps (each command continues its sweep where it stopped; `make evidence` runs them all): "
                     + "; ".join(f"`{c}` ({', '.join(f)})" for c, f in sweeps.items()) + ".")
    commits: dict[str, set[str]] = {}  # per sweep folder: a reader places each claim's runs on its own
    for run in finished:
        commits.setdefault(str(run.folder.parent), set()).add(run.record.get("commit", "unknown"))
    machines = sorted({f"{r.record['machine']['device']} (torch {r.record['machine']['torch']}, "
                       f"{r.record['machine']['threads']} thread(s))" for r in finished if "machine" in r.record})
    if commits:
        lines.append("Code (commit of the code that ran, per sweep): " + "; ".join(
            f"{folder}: {', '.join(sorted(c))}" for folder, c in commits.items()) + ".")
    if machines:
        lines.append(f"Machine(s): {'; '.join(machines)}.")
    unfinished = [r for r in runs if not r.finished]
    if unfinished:
        lines.append("Unfinished runs (left out of every table): " + "; ".join(
            f"{r.folder.parent.name}/{r.folder.name} (CPU minutes at last validation: "
            f"{r.last('time/cpu_minutes') or 0:.1f})" for r in unfinished) + ".")
    restarted = [f"{r.folder.parent.name}/{r.folder.name}" for r in runs if r.best_restarted]
    if restarted:
        lines.append("Best validation of " + ", ".join(restarted) + ": the best of every validation the run logged. "
                     "Their code restarted the logged running best when a run resumed, so the last value it logged "
                     "missed the validations before the stop; the checkpoint each run tested was chosen correctly.")
    return lines


def write_report(paths: Sequence[str | Path], out: str | Path, command: str,
                 tuning: Sequence[str | Path] = (), round2: Round2Inputs | None = None) -> Path:
    absent = [str(p) for p in [*paths, *tuning] if not Path(p).exists()]
    runs = every_run = load_runs([p for p in paths if Path(p).exists()])
    tuning_runs = load_runs([p for p in tuning if Path(p).exists()])
    out = Path(out)
    assets = out
    assets.mkdir(parents=True, exist_ok=True)
    markdown = out.with_suffix(".md")
    lines = ["# Evidence: the paper's claims at laptop scale", "",
             f"Made by `{command}` from the run folders alone; every number below is in a CSV beside the "
             f"figures (`{assets.as_posix()}/`).", ""]
    lines += provenance(runs)
    if absent:
        lines.append(f"Not found (sweeps not run yet?): {', '.join(absent)}.")
    lines.append("")
    questions: list[Section] = []
    if round2 is not None:
        plans = read_plans(round2.plan_file)
        for plan in plans.values():
            members = [r for r in runs if sweep_of(plan, r) is not None]
            questions.append(question_section(plan, members, round2, tuning_runs))
            runs = [r for r in runs if r not in members]
        if "listops" in plans:  # its tuning belongs to its question
            tuning_runs = [r for r in tuning_runs if r.kind != "listops"]
    sections = []
    for kind, build in SECTIONS.items():
        members = [r for r in runs if r.kind == kind]
        if not members:
            continue
        section = build(members)
        if not any(r.finished for r in members):  # empty tables and figures say less than this line
            section = Section(section.title)
            section.conclude("**Not shown yet**: no finished run (the unfinished ones are listed above).\n")
        sections.append(section)
    if tuning_runs:
        sections.append(tuning_section(tuning_runs, runs))
    concluded = [s for s in sections if s.conclusions]
    if round2 is not None:
        lines += ["## Summary", "",
                  f"Round 2 (confirmatory: planned in `{round2.plan_file.as_posix()}` before its runs started):", ""]
        lines += ["- " + " ".join(c.replace("**", "") for c in s.conclusions) for s in questions]
        if concluded:
            lines += [f"- {s.title}: " + " ".join(c.replace("**", "") for c in s.conclusions) for s in concluded]
        if round2.round1 is not None:
            lines += ["", f"Round 1 (exploratory, 3 seeds per model, 40 CPU-minutes a run: "
                          f"[{round2.round1.as_posix()}]({Path(os.path.relpath(round2.round1, markdown.parent)).as_posix()})):", ""]
            lines += exploratory_summary(round2.round1)
        lines.append("")
    elif concluded:
        lines += ["## Summary", ""]
        lines += [f"- {s.title}: " + " ".join(c.replace("**", "") for c in s.conclusions) for s in concluded]
        lines.append("")
    for section in questions + sections:
        lines += [f"## {section.title}", ""]
        lines += [t.replace("{assets}", assets.name) for t in section.text]
        for name, (columns, rows) in section.tables.items():
            write_csv(assets / f"{name}.csv", columns, rows)
        for name, figure in section.figures.items():
            figure.savefig(assets / f"{name}.png", dpi=90, bbox_inches="tight")
    if round2 is not None:
        write_csv(assets / "runs.csv", *runs_table(every_run))
        lines.append(f"Every run, one row each, with every final metric as a number: `{assets.name}/runs.csv`.")
    markdown.write_text("\n".join(lines) + "\n")
    return markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.reports.evidence", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="multirun folders (or run folders) of the evidence sweeps")
    parser.add_argument("--tuning", nargs="*", default=[], help="folders of the runs that chose the recipes")
    parser.add_argument("--out", default="docs/evidence", help="writes OUT.md and OUT/ (CSVs, figures)")
    parser.add_argument("--plan", help="the pre-registration (docs/preregistration.md): its questions' runs are "
                                       "judged by its plans")
    parser.add_argument("--round1", help="the exploratory round's report, quoted in the summary")
    parser.add_argument("--paper-config", help="experiment=logic_paper composed (python train.py "
                                               "experiment=logic_paper --cfg job)")
    parser.add_argument("--paper-epoch", help="the benchmark table of one logic_paper epoch")
    args = parser.parse_args(argv)
    command = "python -m tasks.reports.evidence " + " ".join(args.folders)
    if args.tuning:
        command += " --tuning " + " ".join(args.tuning)
    round2 = None
    if args.plan:
        plan = Path(args.plan)
        optional = {k: Path(v) if v else None for k, v in (("round1", args.round1), ("paper_config", args.paper_config),
                                                            ("paper_epoch", args.paper_epoch))}
        round2 = Round2Inputs(plan, plan.resolve().parent, **optional)
        command += f" --plan {args.plan}" + "".join(f" --{k.replace('_', '-')} {v.as_posix()}"
                                                     for k, v in optional.items() if v)
    command += f" --out {args.out}"
    print(f"wrote {write_report(args.folders, args.out, command, args.tuning, round2)}")


if __name__ == "__main__":
    main()
