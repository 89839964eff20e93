"""The evidence report (``python -m tasks.reports.evidence``): tables, verdicts and files from run folders.

Synthetic run folders with hand-chosen metrics: each expected mean, standard deviation and
verdict below is worked out by hand in the comments.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import yaml

from tasks.reports.evidence import main, write_report
from tasks.reports.runs import load_runs
from tests.helpers import fake_run


def lm_config(arch: str, seed: int, **extra) -> dict:
    return {"seed": seed, "model": {"arch": arch, "n_layers": 2}, "task": {"name": "lm"}, **extra}


def lm_sweep(root: Path, onlstm: list[float], lstm: list[float]) -> Path:
    sweep = root / "lm"
    for arch, ppls in (("onlstm", onlstm), ("lstm", lstm)):
        for seed, ppl in enumerate(ppls, start=1):
            history = [{"step": 10, "val/ppl": 400.0, "time/cpu_minutes": 5.0},
                       {"step": 20, "val/ppl": ppl + 3, "time/cpu_minutes": 10.0}]
            fake_run(sweep / f"{arch}_seed{seed}", lm_config(arch, seed),
                     {"test/ppl": ppl, "val/ppl_best": ppl + 3, "model/parameters": 1000.0}, history)
    return sweep


def test_lm_claim_supported_with_mean_sd_per_seed_and_files(tmp_path):
    # ON-LSTM 100, 102, 104: mean 102, sd 2; LSTM 110, 112, 114: mean 112, sd 2.
    # Standard error of the difference sqrt(4/3 + 4/3) = 1.63; LSTM - ON-LSTM = 10: t = 6.12 with
    # Welch's df = 2 x (3 - 1) = 4 (equal variances and sizes), beyond t(0.975, 4) = 2.776.
    sweep = lm_sweep(tmp_path, [100, 102, 104], [110, 112, 114])
    fake_run(sweep / "onlstm_seed4", lm_config("onlstm", 4), None,
             [{"step": 5, "val/ppl": 900.0, "time/cpu_minutes": 2.5}])  # interrupted: no done.json
    markdown = write_report([sweep], tmp_path / "out" / "evidence", "cmd")
    text = markdown.read_text()
    assert markdown == tmp_path / "out" / "evidence.md"
    assert "| ON-LSTM | 3 | 102.0 ± 2.0 (n=3) | 1: 100.0, 2: 102.0, 3: 104.0 |" in text
    assert "| LSTM | 3 | 112.0 ± 2.0 (n=3) |" in text
    assert "**Verdict: supported.**" in text and "LSTM minus ON-LSTM: difference +10.0, standard error 1.6, t = 6.12, df 4.0" in text
    assert "Unfinished runs (left out of every table): lm/onlstm_seed4 (CPU minutes at last validation: 2.5)" in text
    assert "2026-11-30" in text and "abc123" in text and "Test CPU" in text
    rows = list(csv.reader(open(tmp_path / "out" / "evidence" / "lm_perplexity.csv")))
    assert rows[1][:3] == ["ON-LSTM", "3", "102.0 ± 2.0 (n=3)"]
    assert (tmp_path / "out" / "evidence" / "lm_validation_curves.png").stat().st_size > 1000


def test_lm_claim_contradicted_and_not_shown(tmp_path):
    # ON-LSTM worse by 20 with standard error 1.63: contradicted
    text = write_report([lm_sweep(tmp_path / "a", [120, 122, 124], [100, 102, 104])], tmp_path / "a" / "e", "c")
    assert "**Verdict: contradicted.**" in text.read_text()
    # worse by 1 (102 vs 101), standard error 1.63: within noise
    text = write_report([lm_sweep(tmp_path / "b", [100, 102, 104], [99, 101, 103])], tmp_path / "b" / "e", "c")
    assert "not shown at this scale (ON-LSTM worse on average" in text.read_text()
    # two seeds per model are not enough for a verdict
    text = write_report([lm_sweep(tmp_path / "c", [100, 102], [110, 112])], tmp_path / "c" / "e", "c")
    assert "**Not shown yet**: fewer than 3 finished seeds (ON-LSTM 2, LSTM 2)" in text.read_text()


def parsing_run(sweep: Path, seed: int, weights: str, f1: float, wsj10: float, layer: int) -> None:
    metrics = {"test/f1_sentence": f1, "test/wsj10/f1_sentence": wsj10, "test/chosen_layer": layer,
               "test/f1_sentence_right_branching": 0.40, "test/wsj10/f1_sentence_right_branching": 0.60,
               "test/f1_sentence_left_branching": 0.10, "test/wsj10/f1_sentence_left_branching": 0.20,
               "dev/f1_sentence_layer1": 0.3, "dev/f1_sentence_layer2": 0.5, "test/f1_sentence_layer1": 0.3,
               "test/f1_sentence_layer2": f1}
    # the evaluation config's model node is not the checkpoint's (3 layers here, 2 scored)
    config = {"seed": seed, "lm_weights": weights, "model": {"arch": "onlstm", "n_layers": 3},
              "task": {"name": "parsing"}}
    fake_run(sweep / f"onlstm_seed{seed}_{weights}", config, metrics)


def test_parsing_claim_against_right_branching_and_the_untrained_control(tmp_path):
    sweep = tmp_path / "parsing"
    for seed, (f1, wsj10) in enumerate([(0.50, 0.58), (0.52, 0.60), (0.54, 0.62)], start=1):
        parsing_run(sweep, seed, "best", f1, wsj10, 2)
        parsing_run(sweep, seed, "initial", 0.20 + seed / 100, 0.30, 1)
    text = write_report([sweep], tmp_path / "e", "c").read_text()
    # all lengths: mean 52.0, sd 2.0, standard error 2/sqrt(3) = 1.15; 52 - 40 = 12 > 2.3
    assert "| ON-LSTM, trained (layer chosen on dev) | 3 | 52.0 ± 2.0 (n=3) | 60.0 ± 2.0 (n=3) |" in text
    assert "| right-branching | 3 | 40.0 ± 0.0 (n=3) | 60.0 ± 0.0 (n=3) |" in text
    assert "**Verdict (all lengths): supported.** Trained ON-LSTM 52.0 against right-branching 40.0" in text
    assert "untrained 22.0, so training adds +30.0" in text
    # <= 10 words: 60.0 against 60.0: no difference
    assert "**Verdict (<= 10 words): not shown at this scale.**" in text
    assert "1: 2, 2: 2, 3: 2" in text  # chosen layers
    assert "| trained | 2 | 50.0 ± 0.0 (n=3) |" in text and "| trained | 3 |" not in text


def logic_run(sweep: Path, arch: str, seed: int, val_acc: float, long_acc: float,
              generated_acc: float | None = None) -> None:
    """Accuracy ``long_acc`` on 7-12 operators and ``generated_acc`` (default: the same) on 13-20."""
    generated_acc = long_acc if generated_acc is None else generated_acc
    metrics = {"val/acc_best": val_acc, **{f"test/acc_ops{n}": 0.99 for n in range(7)},
               **{f"test/acc_ops{n}": long_acc for n in range(7, 13)},
               **{f"test/acc_ops{n}": generated_acc for n in range(13, 21)}}
    history = [{"step": 100, "epoch": 1, "val/acc": val_acc, "time/cpu_minutes": 40.0}]
    fake_run(sweep / f"{arch}_seed{seed}", {"seed": seed, "model": {"arch": arch}, "task": {"name": "logic"}},
             metrics, history)


def test_logic_verdict_needs_the_precondition(tmp_path):
    met = tmp_path / "met"
    for seed, (on, lstm) in enumerate([(0.80, 0.60), (0.82, 0.62), (0.84, 0.64)], start=1):
        logic_run(met, "onlstm", seed, 0.97, on)
        logic_run(met, "lstm", seed, 0.96, lstm)
    text = write_report([met], tmp_path / "met_report", "c").read_text()
    assert "| 7 | 0.820 ± 0.020 (n=3) | 0.620 ± 0.020 (n=3) |" in text
    # difference 0.200, standard error sqrt(0.02^2/3 * 2) = 0.016, t = 12.25 at df 4
    assert ("**Verdict (7-12 operators, Bowman's test files): supported.** Mean accuracy over 7-12 operators: "
            "ON-LSTM 0.820, LSTM 0.620 (difference +0.200, standard error 0.016, t = 12.25, df 4.0") in text

    unmet = tmp_path / "unmet"
    for seed in (1, 2, 3):
        logic_run(unmet, "onlstm", seed, 0.97, 0.8)
        logic_run(unmet, "lstm", seed, 0.90, 0.6)
    text = write_report([unmet], tmp_path / "unmet_report", "c").read_text()
    assert "**Verdict: not shown at this scale.** The precondition is not met" in text
    assert "LSTM seed 1: 0.900" in text
    assert "For the record (7-12 operators, Bowman's test files): Mean accuracy over 7-12 operators" in text


def test_two_standard_errors_at_three_seeds_are_not_enough(tmp_path):
    """0.82 against 0.78 with sd 0.02 in each model: difference 0.04, standard error 0.0163, t = 2.45
    at df 4. Beyond two standard errors, short of t(0.975, 4) = 2.776 (t tables: two-sided p between
    0.05 and 0.10), so not shown (break: decide by two standard errors, as a z-test would)."""
    sweep = tmp_path / "logic"
    for seed, (on, lstm) in enumerate([(0.80, 0.76), (0.82, 0.78), (0.84, 0.80)], start=1):
        logic_run(sweep, "onlstm", seed, 0.97, on)
        logic_run(sweep, "lstm", seed, 0.96, lstm)
    text = write_report([sweep], tmp_path / "e", "c").read_text()
    line = next(t for t in text.splitlines() if t.startswith("**Verdict (7-12 operators"))
    assert "**Verdict (7-12 operators, Bowman's test files): not shown at this scale.**" in line
    assert "(difference +0.040, standard error 0.016, t = 2.45, df 4.0, two-sided p = " in line
    assert 0.05 < float(line.split("two-sided p = ")[1][:5]) < 0.10


def test_logic_judges_the_test_files_and_the_generated_lengths_apart(tmp_path):
    """ON-LSTM ahead on 7-12 operators and behind on 13-20: two verdicts, both in the summary at
    the top (break: one mean over 7-20, where the eight generated lengths outvote the six)."""
    sweep = tmp_path / "logic"
    for seed, (on, lstm) in enumerate([(0.80, 0.70), (0.82, 0.72), (0.84, 0.74)], start=1):
        logic_run(sweep, "onlstm", seed, 0.97, on, generated_acc=on - 0.25)
        logic_run(sweep, "lstm", seed, 0.96, lstm, generated_acc=lstm - 0.05)
    text = write_report([sweep], tmp_path / "e", "c").read_text()
    # 7-12: 0.820 vs 0.720, +0.100 > 2 x 0.016; 13-20: 0.570 vs 0.670, -0.100
    assert "**Verdict (7-12 operators, Bowman's test files): supported.**" in text
    assert ("**Verdict (13-20 operators, generated): contradicted.** Mean accuracy over 13-20 operators: "
            "ON-LSTM 0.570, LSTM 0.670 (difference -0.100") in text
    summary = text[text.index("## Summary"):text.index("## 3.")]
    assert "Verdict (7-12 operators, Bowman's test files): supported." in summary
    assert "Verdict (13-20 operators, generated): contradicted." in summary


def syneval_run(sweep: Path, arch: str, seed: int, accuracy: float) -> None:
    sva, refl = "Subject-verb agreement", "Reflexive anaphora"
    rows = [{"dependency": d, "phenomenon": p, "test": t, "comparison": "good_vs_bad",
             "items": str(n), "items_with_oov": "3", "accuracy": str(a)}
            for d, p, t, n, a in (("short-term", sva, "Simple", 140, 0.9), ("short-term", refl, "Simple", 280, 0.6),
                                  ("long-term", sva, "Across a prepositional phrase", 100, accuracy),
                                  ("long-term", sva, "Across a subject relative clause", 100, accuracy))]
    config = {"seed": seed, "model": {"arch": arch}, "task": {"name": "lm"}, "evaluate_after": {"syneval": {}}}
    fake_run(sweep / f"{arch}_seed{seed}", config, {"val/ppl_best": 300.0, "test/acc": 0.5},
             tables={"syneval_table3": rows})


def test_syneval_says_when_both_models_are_at_chance(tmp_path):
    sweep = tmp_path / "syneval"
    for seed in (1, 2, 3):
        syneval_run(sweep, "onlstm", seed, 0.50 + seed / 100)
        syneval_run(sweep, "lstm", seed, 0.49)
    text = write_report([sweep], tmp_path / "e", "c").read_text()
    assert "| long-term | Subject-verb agreement | Across a prepositional phrase (good vs bad) | 100 | 3 |" in text
    assert "0.520 ± 0.010 (n=3) | 0.490 ± 0.000 (n=3) |" in text
    assert "both models are at chance" in text


def test_syneval_rows_that_share_a_test_name_stay_apart(tmp_path):
    """The paper names a subject-verb agreement row and a reflexive anaphora row both "Simple"; each
    keeps its own items and accuracy (break: key the rows by test name and comparison only)."""
    sweep = tmp_path / "syneval"
    for seed in (1, 2, 3):
        syneval_run(sweep, "onlstm", seed, 0.5)
        syneval_run(sweep, "lstm", seed, 0.5)
    text = write_report([sweep], tmp_path / "e", "c").read_text()
    assert ("| short-term | Subject-verb agreement | Simple (good vs bad) | 140 | 3 | 0.900 ± 0.000 (n=3) | "
            "0.900 ± 0.000 (n=3) |") in text
    assert ("| short-term | Reflexive anaphora | Simple (good vs bad) | 280 | 3 | 0.600 ± 0.000 (n=3) | "
            "0.600 ± 0.000 (n=3) |") in text


def test_runs_are_found_in_sweeps_and_bad_folders_are_named(tmp_path, capsys):
    sweep = lm_sweep(tmp_path, [100, 102, 104], [110, 112, 114])
    assert len(load_runs([sweep])) == 6 and len(load_runs([sweep / "lstm_seed2"])) == 1
    with pytest.raises(FileNotFoundError, match="no such run or multirun folder"):
        load_runs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no run folder"):
        load_runs([tmp_path / "empty"])
    main([str(sweep), "--out", str(tmp_path / "cli")])
    assert "wrote" in capsys.readouterr().out and (tmp_path / "cli.md").is_file()


def test_the_report_names_the_command_of_each_sweep(tmp_path):
    """A reader reruns a claim from the report alone: the entry script (Hydra's job name) and the
    experiment of each sweep (break: drop the entry, or read the experiment from the config)."""
    lm = lm_sweep(tmp_path, [100, 102, 104], [110, 112, 114])
    parsing = tmp_path / "parsing"
    parsing_run(parsing, 1, "best", 0.5, 0.6, 2)
    for folder, entry, experiment in ((lm / "onlstm_seed1", "train", "evidence_lm"),
                                      (parsing / "onlstm_seed1_best", "eval", "evidence_parsing")):
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=1", f"experiment={experiment}"]))
        (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"name": entry}}}))
    text = write_report([lm, parsing], tmp_path / "e", "c").read_text()
    assert f"`python train.py -m experiment=evidence_lm` ({lm})" in text
    assert f"`python eval.py -m experiment=evidence_parsing` ({parsing})" in text
    assert f"Code (commit of the code that ran, per sweep): {lm}: abc123; {parsing}: abc123." in text


def test_tuning_runs_and_sweeps_not_run_yet_are_listed(tmp_path):
    sweep = lm_sweep(tmp_path, [100, 102, 104], [110, 112, 114])
    tuning = tmp_path / "tuning"
    config = {"seed": 141, "model": {"arch": "onlstm"}, "task": {"name": "logic", "optimized_metric": "val/acc"}}
    fake_run(tuning / "a", config, {"val/acc_best": 0.91}, [{"step": 5, "time/cpu_minutes": 10.0}])
    (tuning / "a" / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(["experiment=evidence_logic", "test=false", "model.hidden_size=128"]))
    text = write_report([sweep, tmp_path / "logic"], tmp_path / "e", "c", tuning=[tuning]).read_text()
    assert f"Not found (sweeps not run yet?): {tmp_path / 'logic'}." in text
    assert "| logic | model.hidden_size=128 | val/acc_best | 0.9100 | 10.0 | yes | abc123 |" in text


def tuning_sweep(sweep: Path, *shared_overrides: str) -> Path:
    """Two logic tuning runs: width 128 with lr 0.003 (0.88 on validation) and width 256 with lr
    1e-3 (0.93), each run's overrides ``shared_overrides`` and its own."""
    for width, lr, acc in ((128, "0.003", 0.88), (256, "1e-3", 0.93)):
        config = {"seed": 141, "model": {"arch": "onlstm"},
                  "task": {"name": "logic", "optimized_metric": "val/acc", "monitor_mode": "max"}}
        fake_run(sweep / f"h{width}", config, {"val/acc_best": acc}, [{"step": 5, "time/cpu_minutes": 10.0}])
        (sweep / f"h{width}" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
            [*shared_overrides, "experiment=evidence_logic", f"model.hidden_size={width}", f"task.module.lr={lr}"]))
    return sweep


def test_the_report_says_whether_the_recipe_uses_the_best_tuned_setting(tmp_path):
    """Tuning width 128 with lr 0.003 and width 256 with lr 1e-3: 256 wins on validation (0.93 >
    0.88). Runs at width 256 with lr 0.001 in their config use it; runs at width 128 are named as
    not using it (break: pick the first run, or compare the lr as text)."""
    tuning = tuning_sweep(tmp_path / "tuning", "seed=141")
    for width in (256, 128):
        logic = tmp_path / f"logic{width}"
        for seed in (1, 2, 3):
            for arch in ("onlstm", "lstm"):
                logic_run(logic, arch, seed, 0.97, 0.8)
                path = logic / f"{arch}_seed{seed}" / ".hydra" / "config.yaml"
                config = yaml.safe_load(path.read_text())
                config["model"]["hidden_size"] = width
                config["task"]["module"] = {"lr": 1e-3}
                path.write_text(yaml.safe_dump(config))
        text = write_report([logic], tmp_path / f"e{width}", "c", tuning=[tuning]).read_text()
        best = "Best logic setting by val/acc_best (highest): model.hidden_size=256 task.module.lr=1e-3 (0.9300)."
        if width == 256:
            assert best + " The logic runs above use it." in text
        else:
            assert best + " The logic runs above use model.hidden_size=128 task.module.lr=0.001, not the best" in text


def test_a_claim_with_unfinished_runs_only_says_so_without_empty_tables(tmp_path):
    """A sweep in progress: its section names the claim and says nothing is finished; no empty
    table or figure is written for it (break: build the section from the unfinished runs)."""
    sweep = lm_sweep(tmp_path, [100, 102, 104], [110, 112, 114])
    logic = tmp_path / "logic"
    fake_run(logic / "onlstm_seed1", {"seed": 1, "model": {"arch": "onlstm"}, "task": {"name": "logic"}}, None,
             [{"step": 100, "epoch": 1, "val/acc": 0.7, "time/cpu_minutes": 6.0}])
    text = write_report([sweep, logic], tmp_path / "e", "c").read_text()
    assert "## 3. Logical inference" in text
    assert "**Not shown yet**: no finished run (the unfinished ones are listed above)." in text
    assert "Unfinished runs (left out of every table): logic/onlstm_seed1 (CPU minutes at last validation: 6.0)." in text
    assert not list((tmp_path / "e").glob("logic_*"))
    assert (tmp_path / "e" / "lm_perplexity.csv").is_file()


# ------------------------------------------------------------------ the whole report, byte for byte
GOLDEN = Path(__file__).resolve().parent / "fixtures" / "evidence_report"
GOLDEN_COMMAND = "make evidence-report"


def evidence_folders(root: Path) -> tuple[list[str], list[str]]:
    """Run folders of all four claims (one run unfinished) and of a tuning sweep, as the evidence
    sweeps leave them (overrides and Hydra's job name included); (claim folders, tuning folders),
    relative to ``root``."""
    lm = lm_sweep(root, [100, 102, 104], [110, 112, 114])
    fake_run(lm / "onlstm_seed4", lm_config("onlstm", 4), None, [{"step": 5, "val/ppl": 900.0, "time/cpu_minutes": 2.5}])
    parsing = root / "parsing"
    for seed, (f1, wsj10) in enumerate([(0.50, 0.58), (0.52, 0.60), (0.54, 0.62)], start=1):
        parsing_run(parsing, seed, "best", f1, wsj10, 2)
        parsing_run(parsing, seed, "initial", 0.20 + seed / 100, 0.30, 1)
    logic = root / "logic"
    for seed, (on, lstm) in enumerate([(0.80, 0.70), (0.82, 0.72), (0.84, 0.74)], start=1):
        logic_run(logic, "onlstm", seed, 0.97, on, generated_acc=on - 0.25)
        logic_run(logic, "lstm", seed, 0.96, lstm, generated_acc=lstm - 0.05)
    syneval = root / "syneval"
    for seed in (1, 2, 3):
        syneval_run(syneval, "onlstm", seed, 0.70 + seed / 100)
        syneval_run(syneval, "lstm", seed, 0.60)
    for sweep, entry in ((lm, "train"), (parsing, "eval"), (logic, "train"), (syneval, "train")):
        for folder in sweep.iterdir():
            (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"experiment=evidence_{sweep.name}"]))
            (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"name": entry}}}))
    tuning_sweep(root / "logic_tuning")
    return ["lm", "parsing", "logic", "syneval"], ["logic_tuning"]


def report_files(out: Path) -> dict[str, bytes]:
    """The report's markdown and CSVs (the figures are checked for existence only: PNG bytes
    depend on the matplotlib version)."""
    files = {out.with_suffix(".md").name: out.with_suffix(".md").read_bytes()}
    files.update({f"{out.name}/{p.name}": p.read_bytes() for p in sorted(out.glob("*.csv"))})
    return files


def write_golden_report(root: Path) -> dict[str, bytes]:
    claims, tuning = evidence_folders(root)
    write_report([root / p for p in claims], root / "out" / "evidence", GOLDEN_COMMAND, [root / p for p in tuning])
    files = report_files(root / "out" / "evidence")
    # the folders as a reader passes them (relative), whatever temporary folder the test ran in
    return {name: data.replace(str(root).encode() + b"/", b"") for name, data in files.items()}


def test_the_report_is_byte_for_byte_what_it_was(tmp_path):
    """The whole report of every claim, against the files the report wrote when the golden copy was
    taken (tests/fixtures/evidence_report). A change of wording, rounding or order fails here;
    after an intended change regenerate with ``PYTHONPATH=. python -m tests.test_report`` and
    review the diff."""
    files = write_golden_report(tmp_path)
    golden = {str(p.relative_to(GOLDEN)): p.read_bytes() for p in sorted(GOLDEN.rglob("*")) if p.is_file()}
    assert sorted(files) == sorted(golden)
    for name, data in files.items():
        assert data.decode() == golden[name].decode(), name
    figures = re.findall(r"\]\(evidence/(\w+\.png)\)", files["evidence.md"].decode())
    assert len(figures) == 3 and all((tmp_path / "out" / "evidence" / name).stat().st_size > 1000 for name in figures)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        for name, data in write_golden_report(Path(scratch)).items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_bytes(data)
    print(f"wrote {GOLDEN}")
