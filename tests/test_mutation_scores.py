"""`python -m tests.mutation_scores`: the per-module mutation scores of docs/testing.md, from
mutmut's records, with the survivors the doc explains set apart from those it does not."""

from __future__ import annotations

import json

import pytest

from tests import mutation_scores


def _record(mutants, module, codes):
    meta = mutants / f"{module}.meta"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes, "durations_by_key": {}, "estimated_durations_by_key": {}}))


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
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.read_text().splitlines()[2:]}
    # mutants, caught, survived, of which equivalent, not covered, not run yet, score
    assert rows["onlstm/cell.py"] == ["7", "3", "2", "1", "1", "1", "50.0%"]
    assert rows["datamodules/files.py"] == ["1", "1", "0", "0", "0", "0", "100.0%"]
    assert rows["**all**"] == ["**8**", "**4**", "**2**", "**1**", "**1**", "**1**", "**57.1%**"]
    assert "datamodules/__init__.py" not in rows
    printed = capsys.readouterr().out
    assert "2 survivors or uncovered mutants not explained yet" in printed
    assert printed.rstrip().splitlines()[-2:] == ["onlstm.cell.x_cumax__mutmut_5", "onlstm.cell.x_cumax__mutmut_6"]


def test_missing_or_foreign_records_are_errors_that_say_what_to_do(tmp_path, capsys):
    assert mutation_scores.main(["--mutants", str(tmp_path / "nowhere")]) == 2
    assert "run `make mutate` first" in capsys.readouterr().err
    broken = tmp_path / "mutants" / "onlstm" / "cell.py.meta"
    broken.parent.mkdir(parents=True)
    broken.write_text("{}")
    assert mutation_scores.main(["--mutants", str(tmp_path / "mutants")]) == 2
    err = capsys.readouterr().err
    assert "onlstm/cell.py.meta: not a mutmut record" in err and "delete it" in err
