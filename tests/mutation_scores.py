"""The mutation score of each mutated module, from mutmut's own records (``make mutate``).

``python -m tests.mutation_scores [--mutants mutants] [--equivalent docs/testing.md] [--out FILE]``
``python -m tests.mutation_scores --unrun MODULE`` / ``--survivors MODULE``: the names of a module's
mutants that have not run yet, or of its survivors not explained yet, one a line (what ``make
mutate MODULE=...`` and ``make mutate-survivors MODULE=...`` hand to ``mutmut run``).

mutmut keeps one ``<module path>.meta`` file per mutated module under ``mutants/``, with the exit
code of every mutant's test run; mutmut's own table turns codes into statuses. A survivor listed in
the equivalent-mutant table of ``docs/testing.md`` (a row whose first cell is the mutant's name in
backticks) is counted as explained; every other survivor, and every mutant no test covers, is a
behaviour the suite does not check yet.

Score: caught / (caught + survived + not covered), over the mutants that were run; a timeout
counts as caught (the mutant broke the code badly enough to hang it), as mutmut counts it.

mutmut's records live on one machine (``mutants/`` is not committed), and the table is the project's
record of what was measured. So ``--out`` merges: a module keeps the row the file already has while
the records here have judged fewer of its mutants (a new machine, a cache deleted), and each row says
when it was read from mutmut's records.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

CAUGHT = ("killed", "timeout", "caught by type check", "segfault", "crashed")
# mutmut calls every exit code it does not know "suspicious". A test run that a mutant makes torch abort
# (SIGABRT: a mutant passing a state of the wrong shape to torch.lstm does) is caught like a segfault;
# any other (a SIGTERM when the machine stops, say) says nothing about the mutant: it is run again.
CRASH_SIGNALS = {-4: "SIGILL", -6: "SIGABRT", -7: "SIGBUS", -8: "SIGFPE"}
NOT_RUN = ("not checked", "check was interrupted by user", "suspicious")
# what the equivalent table may explain: a survivor, or a mutant no test reaches
EXPLAINABLE = ("survived", "no tests")
COLUMNS = ("mutants", "caught", "survived", "of which equivalent", "not covered", "not run yet", "score")
MEASURED = "read from mutmut's records"
EQUIVALENT_ROW = re.compile(r"^\|\s*`([^`]+__mutmut_\d+)`\s*\|")


class MutationRecordsError(ValueError):
    pass


def equivalent_mutants(doc: Path) -> set[str]:
    """The mutant names of the rows of ``doc`` that start with a backticked mutant name."""
    if not doc.is_file():
        return set()
    return {m.group(1) for line in doc.read_text().splitlines() if (m := EQUIVALENT_ROW.match(line))}


def statuses(mutants: Path) -> dict[str, dict[str, str]]:
    """{module path: {mutant name: status}} for every module mutmut mutated under ``mutants``."""
    if not mutants.is_dir():
        raise MutationRecordsError(f"{mutants}: no such folder; run `make mutate` first (mutmut writes it)")
    out: dict[str, dict[str, str]] = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        try:
            codes = json.loads(meta.read_text())["exit_code_by_key"]
        except (json.JSONDecodeError, KeyError) as error:
            raise MutationRecordsError(f"{meta}: not a mutmut record ({error}); delete it and run `make mutate` "
                                       "again") from error
        if codes:
            module = meta.relative_to(mutants).as_posix()[: -len(".meta")]
            out[module] = {name: "crashed" if code in CRASH_SIGNALS else status_by_exit_code[code]
                           for name, code in codes.items()}
    return out


def module_row(by_mutant: dict[str, str], equivalent: set[str]) -> dict[str, object]:
    counts = Counter(by_mutant.values())
    caught = sum(counts[s] for s in CAUGHT)
    survived = counts["survived"]
    uncovered = counts["no tests"]
    judged = caught + survived + uncovered
    return {"mutants": len(by_mutant), "caught": caught, "survived": survived,
            "of which equivalent": sum(1 for name, s in by_mutant.items() if s == "survived" and name in equivalent),
            "not covered": uncovered, "not run yet": len(unrun(by_mutant)),
            "score": f"{100 * caught / judged:.1f}%" if judged else "-"}


def unexplained(records: dict[str, dict[str, str]], equivalent: set[str]) -> list[str]:
    """The survivors and uncovered mutants that are not listed as equivalent: the work left."""
    return sorted(name for by_mutant in records.values() for name, status in by_mutant.items()
                  if status in EXPLAINABLE and name not in equivalent)


def dotted(path: str) -> str:
    """``onlstm/cell.py`` -> ``onlstm.cell``: a module as mutmut's mutant names begin."""
    return path[: -len(".py")].replace("/", ".")


def stale_equivalents(records: dict[str, dict[str, str]], equivalent: set[str]) -> list[str]:
    """The rows of the equivalent table that no longer name a survivor: the mutant was caught, or its
    module's records hold no mutant of that name. mutmut numbers a function's mutants afresh when its
    source changes, so such a row's reason may now describe another edit: it must be judged again.
    Rows of modules without records here, or whose mutant has not run yet, are not judged."""
    modules = {dotted(path): by_mutant for path, by_mutant in records.items()}
    stale = []
    for name in sorted(equivalent):
        owner = next((by for module, by in modules.items() if name.startswith(module + ".x")), None)
        if owner is None:
            continue
        status = owner.get(name)
        if status is None or status not in (*EXPLAINABLE, *NOT_RUN):
            stale.append(f"{name} ({'no such mutant' if status is None else status})")
    return stale


def module_mutants(records: dict[str, dict[str, str]], module: str) -> dict[str, str]:
    """The {mutant name: status} of one module, named like ``onlstm.cell`` or ``onlstm/cell.py``."""
    path = module if module.endswith(".py") else module.replace(".", "/") + ".py"
    if path not in records:
        raise MutationRecordsError(f"{module}: no mutants of this module in mutmut's records; the modules are: "
                                   + ", ".join(dotted(p) for p in records))
    return records[path]


def unrun(by_mutant: dict[str, str]) -> list[str]:
    """The mutants the table counts as *not run yet*: what `make mutate MODULE=...` runs."""
    return [name for name, status in by_mutant.items() if status in NOT_RUN]


def judged(row: dict[str, object]) -> int:
    """How many of a row's mutants a test run has judged (the denominator of its score)."""
    return int(row["caught"]) + int(row["survived"]) + int(row["not covered"])


def read_table(path: Path) -> dict[str, dict[str, object]]:
    """The module rows of a table this module wrote (``{}`` when there is no such file)."""
    if not path.is_file():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    if not lines:
        return {}
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    if header[0] != "module" or not set(COLUMNS) <= set(header):
        raise MutationRecordsError(f"{path}: not a table of mutation scores (its header is {lines[0]!r}); "
                                   "give --out another file or delete it")
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=False))
        if not cells["module"].startswith("**"):
            rows[cells.pop("module")] = {**cells, MEASURED: cells.get(MEASURED, "-")}
    return rows


def merged_rows(records: dict[str, dict[str, str]], equivalent: set[str], earlier: dict[str, dict[str, object]],
                measured: str) -> dict[str, dict[str, object]]:
    """Each module's row from the records, unless ``earlier`` holds a row with more mutants judged."""
    rows = dict(earlier)
    for module, by_mutant in records.items():
        row = {**module_row(by_mutant, equivalent), MEASURED: measured}
        if module not in earlier or judged(row) >= judged(earlier[module]):
            rows[module] = row
    return dict(sorted(rows.items()))


def table(rows: dict[str, dict[str, object]]) -> str:
    columns = (*COLUMNS, MEASURED)
    lines = ["| module | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for module, row in rows.items():
        lines.append(f"| {module} | " + " | ".join(str(row[c]) for c in columns) + " |")
    if rows:
        total = {c: sum(int(row[c]) for row in rows.values()) for c in COLUMNS[:-1]}
        total["score"] = f"{100 * total['caught'] / judged(total):.1f}%" if judged(total) else "-"
        lines.append("| **all** | " + " | ".join(f"**{total[c]}**" for c in COLUMNS) + " | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's folder (default: mutants)")
    parser.add_argument("--equivalent", type=Path, default=Path("docs/testing.md"),
                        help="the doc whose table lists the survivors judged equivalent")
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown), keeping the rows of "
                        "modules the records have judged fewer mutants of")
    parser.add_argument("--list", action="store_true", help="print the survivors not yet explained, one a line")
    names = parser.add_mutually_exclusive_group()
    names.add_argument("--unrun", metavar="MODULE", nargs="+",
                       help="only print the names of the modules' mutants not run yet (in the order given)")
    names.add_argument("--survivors", metavar="MODULE", nargs="+",
                       help="only print the names of the modules' survivors and uncovered mutants not explained yet")
    args = parser.parse_args(argv)
    equivalent = equivalent_mutants(args.equivalent)
    try:
        records = statuses(args.mutants)
        if args.unrun or args.survivors:
            chosen = {module: module_mutants(records, module) for module in args.unrun or args.survivors}
            selected = ([name for by_mutant in chosen.values() for name in unrun(by_mutant)] if args.unrun
                        else unexplained(chosen, equivalent))
            if selected:
                print("\n".join(selected))
            return 0
        earlier = read_table(args.out) if args.out is not None else {}
    except MutationRecordsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = table(merged_rows(records, equivalent, earlier, now))
    print(text)
    left = unexplained(records, equivalent)
    print(f"{len(left)} survivors or uncovered mutants not explained yet"
          + (" (--list names them)" if left and not args.list else ""))
    if args.list:
        print("\n".join(left))
    stale = stale_equivalents(records, equivalent)
    if stale:
        print(f"{len(stale)} rows of the equivalent table in {args.equivalent} no longer name a survivor "
              "(renumbered after a source change, or caught): judge them again:\n" + "\n".join(stale))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
