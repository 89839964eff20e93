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
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from tasks.jobs.run_folder import write_csv
from tasks.reports.claims import lm, logic, parsing, syneval
from tasks.reports.runs import RunRecord, load_runs
from tasks.reports.sections import Section
from tasks.reports.tuning import tuning_section

SECTIONS = {"lm": lm.section, "parsing": parsing.section, "logic": logic.section, "syneval": syneval.section}


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
    return lines


def write_report(paths: Sequence[str | Path], out: str | Path, command: str,
                 tuning: Sequence[str | Path] = ()) -> Path:
    absent = [str(p) for p in [*paths, *tuning] if not Path(p).exists()]
    runs = load_runs([p for p in paths if Path(p).exists()])
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
    if concluded:
        lines += ["## Summary", ""]
        lines += [f"- {s.title}: " + " ".join(c.replace("**", "") for c in s.conclusions) for s in concluded]
        lines.append("")
    for section in sections:
        lines += [f"## {section.title}", ""]
        lines += [t.replace("{assets}", assets.name) for t in section.text]
        for name, (columns, rows) in section.tables.items():
            write_csv(assets / f"{name}.csv", columns, rows)
        for name, figure in section.figures.items():
            figure.savefig(assets / f"{name}.png", dpi=90, bbox_inches="tight")
    markdown.write_text("\n".join(lines) + "\n")
    return markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tasks.reports.evidence", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="multirun folders (or run folders) of the evidence sweeps")
    parser.add_argument("--tuning", nargs="*", default=[], help="folders of the runs that chose the recipes")
    parser.add_argument("--out", default="docs/evidence", help="writes OUT.md and OUT/ (CSVs, figures)")
    args = parser.parse_args(argv)
    command = "python -m tasks.reports.evidence " + " ".join(args.folders)
    if args.tuning:
        command += " --tuning " + " ".join(args.tuning)
    command += f" --out {args.out}"
    print(f"wrote {write_report(args.folders, args.out, command, args.tuning)}")


if __name__ == "__main__":
    main()
