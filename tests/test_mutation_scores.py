"""`python -m tests.mutation_scores`: the per-module mutation scores of docs/testing.md, from
mutmut's records, with the survivors the doc explains set apart from those it does not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import mutation_scores


def _record(mutants, module, codes):
    meta = mutants / f"{module}.meta"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes, "durations_by_key": {}, "estimated_durations_by_key": {}}))


def _rows(table):
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table.read_text().splitlines()[2:]}


@pytest.fixture
def records(tmp_path):
    mutants = tmp_path / "mutants"
    # onlstm/cell.py: 2 killed, 1 timeout, 1 survivor explained, 1 not, 1 no test, 1 not run yet
    _record(mutants, "onlstm/cell.py", {
        "onlstm.cell.x_cumax__mutmut_1": 1, "onlstm.cell.x_cumax__mutmut_2": 1, "onlstm.cell.x_cumax__mutmut_3": 36,
        "onlstm.cell.x_cumax__mutmut_4": 0, "onlstm.cell.x_cumax__mutmut_5": 0, "onlstm.cell.x_cumax__mutmut_6": 33,
        "onlstm.cell.x_cumax__mutmut_7": None,
    })
    _record(mutants, "datamodules/files.py", {"datamodules.files.x_open__mutmut_1": 1})
    _record(mutants, "datamodules/__init__.py", {})  # a module without mutants is left out
    doc = tmp_path / "testing.md"
    doc.write_text("# Testing\n\n| mutant | why it is equivalent |\n|---|---|\n"
                   "| `onlstm.cell.x_cumax__mutmut_4` | a log message's wording |\n"
                   "Not a row: `onlstm.cell.x_cumax__mutmut_5` named in prose.\n")
    return mutants, doc


def test_scores_per_module_count_timeouts_as_caught_and_uncovered_as_not(records, tmp_path, capsys):
    mutants, doc = records
    out = tmp_path / "scores.md"
    assert mutation_scores.main(["--mutants", str(mutants), "--equivalent", str(doc), "--out", str(out), "--list"]) == 0
    rows = _rows(out)
    # mutants, caught, survived, of which equivalent, not covered, not run yet, score, when read
    assert rows["onlstm/cell.py"][:7] == ["7", "3", "2", "1", "1", "1", "50.0%"]
    assert rows["datamodules/files.py"][:7] == ["1", "1", "0", "0", "0", "0", "100.0%"]
    assert rows["**all**"][:7] == ["**8**", "**4**", "**2**", "**1**", "**1**", "**1**", "**57.1%**"]
    assert re.fullmatch(r"20\d\d-\d\d-\d\d \d\d:\d\d UTC", rows["onlstm/cell.py"][7])
    assert "datamodules/__init__.py" not in rows
    printed = capsys.readouterr().out
    assert "2 survivors or uncovered mutants not explained yet" in printed
    assert printed.rstrip().splitlines()[-2:] == ["onlstm.cell.x_cumax__mutmut_5", "onlstm.cell.x_cumax__mutmut_6"]


def test_equivalent_rows_that_no_longer_name_a_survivor_are_printed_to_be_judged_again(records, capsys):
    """A row naming a caught mutant, or one its module no longer has (mutmut renumbers a changed
    function's mutants), may describe another edit now; a row whose module has no records here, or
    whose mutant has not run yet, cannot be judged (breaks seen failing: every row printed, none)."""
    mutants, doc = records
    doc.write_text(doc.read_text() + "".join(f"| `{name}` | reason |\n" for name in (
        "onlstm.cell.x_cumax__mutmut_1", "onlstm.cell.x_cumax__mutmut_9", "onlstm.cell.x_cumax__mutmut_7",
        "onlstm.cell.x_cumax__mutmut_6",  # no test reaches it: still explainable, not stale
        "onlstm.stack.x_run__mutmut_1")))
    assert mutation_scores.main(["--mutants", str(mutants), "--equivalent", str(doc)]) == 0
    printed = capsys.readouterr().out.rstrip().splitlines()
    assert printed[-3:] == [
        f"2 rows of the equivalent table in {doc} no longer name a survivor (renumbered after a source "
        "change, or caught): judge them again:",
        "onlstm.cell.x_cumax__mutmut_1 (killed)",
        "onlstm.cell.x_cumax__mutmut_9 (no such mutant)",
    ]


def test_missing_or_foreign_records_are_errors_that_say_what_to_do(tmp_path, capsys):
    assert mutation_scores.main(["--mutants", str(tmp_path / "nowhere")]) == 2
    assert "run `make mutate` first" in capsys.readouterr().err
    broken = tmp_path / "mutants" / "onlstm" / "cell.py.meta"
    broken.parent.mkdir(parents=True)
    broken.write_text("{}")
    assert mutation_scores.main(["--mutants", str(tmp_path / "mutants")]) == 2
    err = capsys.readouterr().err
    assert "onlstm/cell.py.meta: not a mutmut record" in err and "delete it" in err


def test_a_modules_unrun_mutants_and_unexplained_survivors_are_listed_for_mutmut(records, capsys):
    mutants, doc = records
    common = ["--mutants", str(mutants), "--equivalent", str(doc)]
    assert mutation_scores.main([*common, "--unrun", "onlstm.cell"]) == 0
    assert capsys.readouterr().out.splitlines() == ["onlstm.cell.x_cumax__mutmut_7"]
    # the explained survivor (4) is left out; the uncovered mutant (6) is rerun with the survivors
    assert mutation_scores.main([*common, "--survivors", "onlstm/cell.py"]) == 0
    assert capsys.readouterr().out.splitlines() == ["onlstm.cell.x_cumax__mutmut_5", "onlstm.cell.x_cumax__mutmut_6"]
    # nothing left: nothing printed, so `make mutate MODULE=...` runs no mutmut at all
    assert mutation_scores.main([*common, "--unrun", "datamodules.files"]) == 0
    assert capsys.readouterr().out == ""


def test_a_module_without_records_is_an_error_that_lists_the_modules(records, capsys):
    mutants, doc = records
    assert mutation_scores.main(["--mutants", str(mutants), "--unrun", "onlstm.cel"]) == 2
    err = capsys.readouterr().err
    assert "onlstm.cel: no mutants of this module" in err
    assert "the modules are: datamodules.files, onlstm.cell" in err


@pytest.fixture
def make_mutate(records, tmp_path):
    """`make mutate...` run from a folder holding the records, with a stand-in mutmut that writes
    down what it was asked to run (the real one would run for hours)."""
    mutants, doc = records
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "testing.md").write_text(doc.read_text())  # where make looks for the explained ones
    repo = Path(__file__).resolve().parents[1]
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nPYTHONPATH="{repo}" exec "{sys.executable}" "$@"\n')
    (venv / "bin" / "mutmut").write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/mutmut_calls"\n'
                                         f'ulimit -v > "{tmp_path}/mutmut_memory_kb"\n')
    for script in (venv / "bin").iterdir():
        script.chmod(0o755)
    for dependency in ("pyproject.toml", "constraints.txt"):  # the install step's inputs, older than its stamp
        (tmp_path / dependency).write_text("")
    (venv / ".installed").write_text("")

    # not the variables of a make this test may run under (make mutate: MAKEFLAGS carries its MODULE)
    environment = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MODULE", "MUTANTS")}

    def run(*args):
        done = subprocess.run(["make", "-s", "-f", str(repo / "Makefile"), *args, f"VENV={venv}",
                               f"MUTATION_SCORES={tmp_path}/scores.md"],
                              cwd=tmp_path, capture_output=True, text=True, env=environment)
        calls = tmp_path / "mutmut_calls"
        return done, calls.read_text().splitlines() if calls.exists() else []
    return run


def test_make_mutate_of_a_module_runs_only_its_mutants_not_run_yet(make_mutate, tmp_path):
    done, calls = make_mutate("mutate", "MODULE=onlstm.cell")
    assert done.returncode == 0, done.stderr
    assert calls == ["run --max-children 1 onlstm.cell.x_cumax__mutmut_7"]
    assert (tmp_path / "scores.md").is_file()


def test_make_mutate_caps_the_memory_of_mutmut_and_its_mutants(make_mutate, tmp_path):
    """A mutant that turns a loop endless while it appends fills 24 GB within its timeout; the
    address space is capped at 8 GiB (in KiB, as `ulimit -v` counts) unless told otherwise."""
    make_mutate("mutate", "MODULE=onlstm.cell")
    assert (tmp_path / "mutmut_memory_kb").read_text().strip() == str(8 * 1024 * 1024)
    make_mutate("mutate", "MODULE=onlstm.cell", "MUTATE_MEMORY_KB=1048576")
    assert (tmp_path / "mutmut_memory_kb").read_text().strip() == "1048576"


def test_make_mutate_of_a_finished_module_runs_nothing(make_mutate):
    # mutmut given no names runs every mutant of the project: a finished module must not call it
    done, calls = make_mutate("mutate", "MODULE=datamodules.files")
    assert done.returncode == 0, done.stderr
    assert calls == []
    assert "datamodules.files: no mutants left to run" in done.stdout


def test_make_mutate_survivors_reruns_the_unexplained_ones_of_the_named_module(make_mutate):
    done, calls = make_mutate("mutate-survivors")
    assert done.returncode == 2 and "make mutate-survivors MODULE=" in done.stdout
    assert calls == []
    done, calls = make_mutate("mutate-survivors", "MODULE=onlstm.cell")
    assert done.returncode == 0, done.stderr
    assert calls == ["run --max-children 1 onlstm.cell.x_cumax__mutmut_5 onlstm.cell.x_cumax__mutmut_6"]


def test_make_mutate_of_several_modules_runs_their_mutants_in_one_mutmut_run(make_mutate):
    """One mutmut run (so one clean test run) for all the modules named, in their order."""
    done, calls = make_mutate("mutate-survivors", "MODULE=onlstm.cell datamodules.files")
    assert done.returncode == 0, done.stderr
    assert calls == ["run --max-children 1 onlstm.cell.x_cumax__mutmut_5 onlstm.cell.x_cumax__mutmut_6"]
    done, calls = make_mutate("mutate", "MODULE=datamodules.files onlstm.cell")
    assert done.returncode == 0, done.stderr
    assert calls[-1] == "run --max-children 1 onlstm.cell.x_cumax__mutmut_7"


def test_make_mutate_of_an_unknown_module_stops_with_the_error(make_mutate):
    done, calls = make_mutate("mutate", "MODULE=onlstm.cel")
    assert done.returncode != 0
    assert "onlstm.cel: no mutants of this module" in done.stderr
    assert calls == []


def test_a_mutant_whose_run_was_interrupted_counts_and_runs_as_not_run_yet(tmp_path, capsys):
    mutants = tmp_path / "mutants"
    _record(mutants, "onlstm/stack.py", {"onlstm.stack.x_f__mutmut_1": 2, "onlstm.stack.x_f__mutmut_2": None,
                                         "onlstm.stack.x_f__mutmut_3": 1})
    assert mutation_scores.main(["--mutants", str(mutants), "--unrun", "onlstm.stack"]) == 0
    assert capsys.readouterr().out.splitlines() == ["onlstm.stack.x_f__mutmut_1", "onlstm.stack.x_f__mutmut_2"]
    assert mutation_scores.main(["--mutants", str(mutants), "--equivalent", str(tmp_path / "none.md")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| onlstm/stack.py"))
    assert [c.strip() for c in row.split("|")[2:-2]] == ["3", "1", "0", "0", "0", "2", "100.0%"]


def test_a_test_run_killed_by_a_crash_is_caught_and_one_ended_by_another_signal_runs_again(tmp_path, capsys):
    """mutmut calls both "suspicious": torch aborting on a mutant's bad arguments is a failure a user
    sees; a run stopped from outside (SIGTERM) has no result."""
    mutants = tmp_path / "mutants"
    _record(mutants, "onlstm/stack.py", {"onlstm.stack.x_f__mutmut_1": -6, "onlstm.stack.x_f__mutmut_2": -15,
                                         "onlstm.stack.x_f__mutmut_3": 0})
    assert mutation_scores.main(["--mutants", str(mutants), "--unrun", "onlstm.stack"]) == 0
    assert capsys.readouterr().out.splitlines() == ["onlstm.stack.x_f__mutmut_2"]
    assert mutation_scores.main(["--mutants", str(mutants), "--equivalent", str(tmp_path / "none.md")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| onlstm/stack.py"))
    # mutants, caught, survived, of which equivalent, not covered, not run yet, score
    assert [c.strip() for c in row.split("|")[2:-2]] == ["3", "1", "1", "0", "0", "1", "50.0%"]


def test_the_written_table_keeps_a_modules_row_until_the_records_have_judged_as_many_of_its_mutants(records, tmp_path):
    # mutmut's records stay on the machine that ran it: a new machine's fresh records must not erase
    # the scores measured before, and a record that has caught up replaces the older row
    mutants, doc = records
    out = tmp_path / "scores.md"
    out.write_text(
        "| module | mutants | caught | survived | of which equivalent | not covered | not run yet | score | "
        "read from mutmut's records |\n|---|---|---|---|---|---|---|---|---|\n"
        "| onlstm/cell.py | 7 | 6 | 1 | 0 | 0 | 0 | 85.7% | 2026-12-01 10:00 UTC |\n"
        "| datamodules/files.py | 1 | 0 | 0 | 0 | 0 | 1 | - | 2026-12-01 10:00 UTC |\n"
        "| onlstm/lm.py | 10 | 9 | 1 | 0 | 0 | 0 | 90.0% | 2026-12-01 10:00 UTC |\n"
        "| **all** | **18** | **15** | **2** | **0** | **0** | **1** | **88.2%** | |\n")
    assert mutation_scores.main(["--mutants", str(mutants), "--equivalent", str(doc), "--out", str(out)]) == 0
    rows = _rows(out)
    # cell.py: 6 judged here against 7 in the table: the table's row stays, with its date
    assert rows["onlstm/cell.py"] == ["7", "6", "1", "0", "0", "0", "85.7%", "2026-12-01 10:00 UTC"]
    # files.py: the records have judged 1 against the table's 0: the records' row, read now
    assert rows["datamodules/files.py"][:7] == ["1", "1", "0", "0", "0", "0", "100.0%"]
    assert rows["datamodules/files.py"][7] != "2026-12-01 10:00 UTC"
    # lm.py: not in the records at all: kept
    assert rows["onlstm/lm.py"][:7] == ["10", "9", "1", "0", "0", "0", "90.0%"]
    assert rows["**all**"][:7] == ["**18**", "**16**", "**2**", "**0**", "**0**", "**0**", "**88.9%**"]


def test_a_file_that_is_not_a_scores_table_is_not_overwritten(records, tmp_path, capsys):
    mutants, doc = records
    out = tmp_path / "notes.md"
    out.write_text("| name | value |\n|---|---|\n| a | 1 |\n")
    assert mutation_scores.main(["--mutants", str(mutants), "--equivalent", str(doc), "--out", str(out)]) == 2
    assert "not a table of mutation scores" in capsys.readouterr().err
    assert out.read_text() == "| name | value |\n|---|---|\n| a | 1 |\n"
