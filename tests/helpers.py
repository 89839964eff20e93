"""What the tests share, in one place: paths, the tiny backbone (as config overrides and as a
``BackboneConfig``), tiny training runs, the real Hydra config composed for a test, running
``python train.py`` as a user would, and the equality check of a recurrence path against the
reference. Fixtures stay in conftest.py; no test module imports another test module."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import train  # noqa: F401  (registers the schemas and resolvers compose_config needs)
from onlstm import BackboneConfig, ONLSTMStack

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ONLSTM_DATA_DIR") or ROOT.parent / "shared" / "data")

# ----------------------------------------------------------------------------- the tiny backbone
# a backbone small enough for seconds-long runs; same code paths as the paper's
TINY_BACKBONE = {"emb_size": 16, "hidden_size": 32, "n_layers": 2, "chunk_size": 4}


def tiny_model_overrides(**changes) -> list[str]:
    """The tiny backbone as ``model.*`` overrides, ``changes`` replacing or adding keys."""
    return [f"model.{key}={value}" for key, value in {**TINY_BACKBONE, **changes}.items()]


def tiny_backbone(**changes) -> BackboneConfig:
    """The tiny backbone as a ``BackboneConfig``, ``changes`` replacing or adding fields."""
    return BackboneConfig(**{**TINY_BACKBONE, **changes})


TINY_MODEL = tiny_model_overrides()
NO_DROPOUT = {"dropout": 0.0, "dropouth": 0.0, "dropouti": 0.0, "dropoute": 0.0, "wdrop": 0.0}

# an LM run of a few seconds: the tiny backbone on a 1% prefix of PTB's training stream
LM_TINY_RUN = [
    *TINY_MODEL,
    "task.datamodule.train_fraction=0.01",
    "task.datamodule.batch_size=4",
    "task.datamodule.eval_batch_size=5",
    "task.datamodule.bptt=20",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
]

# a logic run of a few seconds: 1-layer tiny encoder, formulas with 0-1 operators, small subsamples
LOGIC_TINY_RUN = [
    "task=logic",
    *tiny_model_overrides(n_layers=1, tie_weights="false"),
    "task.datamodule.train_ops=[0,1]",
    "task.datamodule.test_ops=[0,1]",
    "task.datamodule.train_fraction=0.02",
    "task.datamodule.val_fraction=0.1",
    "task.datamodule.test_fraction=0.02",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
]

# a parsing run of a second: the sample's first two development and two test files
FEW_FILES = "task.datamodule.file_pattern='wsj_0(00[1-2]|10[0-1])\\.mrg'"

# experiments that evaluate the checkpoints of an earlier sweep: they run with eval.py (conf/eval.yaml)
EVAL_ONLY_EXPERIMENTS = ("evidence_parsing", "evidence2_parsing", "evidence2_lm_marks")

# the Marvin & Linzen suite with limit_per_condition=1 (data README, section 4): 8 files with 2
# conditions, 14 with 4, in 15 reporting groups
SYNEVAL_ITEMS_ONE_PER_CONDITION = 8 * 2 + 14 * 4
SYNEVAL_GROUPS = 15


def write_lines(path: Path, lines: list[str]) -> Path:
    """A data file of ``lines``, each ended by a newline."""
    path.write_text("".join(line + "\n" for line in lines))
    return path


def command_line_messages(main, capsys) -> tuple[str, str]:
    """What an argparse ``main`` prints for ``--help`` (whitespace folded, so the terminal's width
    does not matter) and its error when called with no arguments."""
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main([])
    return shown, capsys.readouterr().err


def requires_data(*relative: str):
    missing = [p for p in relative if not (DATA_DIR / p).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"data not found under {DATA_DIR}: {missing}")


# ----------------------------------------------------------------------------- configs and runs
def compose_config(overrides: list[str], output_dir: Path, config_name: str = "config") -> DictConfig:
    """The real config (conf/config.yaml, train.py's; ``config_name="eval"``: conf/eval.yaml,
    eval.py's) with overrides, its outputs under ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
    return cfg


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK")}
    env.update(ONLSTM_DATA_DIR=str(DATA_DIR), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", WANDB_MODE="offline")
    return env


def run_train(args: list[str], timeout: int = 600, script: str = "train.py") -> subprocess.CompletedProcess:
    """``python train.py <args>`` (or ``script``) from the project root; fails the test with the output's tail."""
    proc = subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{script} {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


def run_eval(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """``python eval.py <args>`` from the project root; fails the test with the output's tail."""
    return run_train(args, timeout, script="eval.py")


def logged_metrics(run_dir: Path) -> dict[str, float]:
    """The last value of every metric in a run's CSV log (``<run>/csv/metrics.csv``)."""
    values: dict[str, float] = {}
    with open(Path(run_dir) / "csv" / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            values.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return values


# ----------------------------------------------------------------------------- model folders
def load_in_fresh_interpreter(folder: Path, tokens: torch.Tensor, expected: torch.Tensor, tmp_path: Path) -> str:
    """Load a model folder with ``RNNLanguageModel.from_pretrained`` in a new Python process that
    imports the library only, and check there that the log-probabilities of ``tokens`` (time, batch)
    are ``expected`` bit for bit and that no Lightning or Hydra module was imported. Returns what it
    printed: ``ok <vocabulary size> <first two words>``."""
    torch.save(expected, tmp_path / "expected.pt")
    script = (
        "import sys, torch\n"
        "from onlstm import RNNLanguageModel\n"
        f"model = RNNLanguageModel.from_pretrained({str(folder)!r})\n"
        f"tokens = torch.tensor({tokens.T.tolist()}).T\n"
        "with torch.no_grad():\n"
        "    got = model(tokens).logits.log_softmax(-1)\n"
        f"assert torch.equal(got, torch.load({str(tmp_path / 'expected.pt')!r})), 'log-probabilities differ'\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning', 'lightning_fabric', 'hydra', 'omegaconf'))\n"
        "assert not heavy, heavy\n"
        "print('ok', len(model.vocab), model.vocab[:2])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


# ----------------------------------------------------------------------------- tree pages in a browser
# the tree pages (onlstm/parsing/tree_page.py) are opened in Debian's chromium through
# chromium-driver and selenium (the `browser` fixture of conftest.py)
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no headless browser: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)


def open_tree_page(browser, path: Path):
    """The page at ``path`` opened from disk, once its script has run (it counts the rows shown)."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(Path(path).resolve().as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.find_element("id", "shown").text.endswith("shown"))
    return browser


def row_ids(browser, visible_only: bool = False) -> list[str]:
    rows = browser.find_elements("css selector", "#sentences .sentence")
    return [row.find_element("css selector", ".id").text for row in rows if row.is_displayed() or not visible_only]


def drawn_trees(browser) -> list[dict]:
    """Each tree's SVG as the browser lays it out, in page order: its box (width, height) and its
    words [text, x, width, height]; each scrolled into view first, as rows out of view are not drawn."""
    return browser.execute_script(
        """return Array.from(document.querySelectorAll('svg.tree')).map(function (svg) {
             svg.scrollIntoView();
             var r = svg.getBoundingClientRect();
             var words = Array.from(svg.querySelectorAll('text.leaf')).map(function (t) {
               var b = t.getBBox(); return [t.textContent, b.x, b.width, b.height]; });
             return {width: r.width, height: r.height, words: words}; });"""
    )


def check_drawn_trees(boxes: list[dict], sentences: list[list[str]]) -> None:
    """Every tree drawn with its words in order, each word with an extent and none overlapping the next."""
    assert len(boxes) == len(sentences)
    for box, words in zip(boxes, sentences):
        assert box["width"] > 0 and box["height"] > 0
        assert [w[0] for w in box["words"]] == list(words)
        assert all(w[2] > 0 and w[3] > 0 for w in box["words"]), "a word drawn with no extent"
        for left, right in zip(box["words"], box["words"][1:]):  # the width estimate leaves room for each word
            assert left[1] + left[2] <= right[1] + 0.5, f"{left[0]!r} overlaps {right[0]!r}"


# ----------------------------------------------------------------------------- recurrence paths
# Every comparison runs the same stack twice, once per implementation, with identical parameters
# and the RNG seeded identically before each forward, so the DropConnect and locked-dropout masks
# (sampled inside the stack) match.

# (layer sizes, chunk size, time, batch): several layers, chunk size 1, a single time step
SHAPES = [
    ([5, 12, 8], 4, 6, 3),
    ([4, 6], 1, 5, 2),
    ([3, 8, 8], 2, 1, 4),
]
TOL = {"rtol": 1e-4, "atol": 1e-5}


def run_stack(stack: ONLSTMStack, x: torch.Tensor, hidden, distances: str, seed: int = 1):
    """Forward + backward of a loss over everything the stack returns; returns (outputs, grads)."""
    x = x.clone().requires_grad_(True)
    if hidden is not None:
        hidden = [(h.clone().requires_grad_(True), c.clone().requires_grad_(True)) for h, c in hidden]
    torch.manual_seed(seed)
    out = stack(x, hidden)
    loss = out.output.pow(2).sum() + sum(h.pow(3).sum() + 2.0 * c.sum() for h, c in out.hidden)
    loss = loss + sum(o.sin().sum() for o in out.outputs[:-1])
    weights = torch.linspace(-1.0, 1.0, out.distances.numel(), device=out.distances.device).view_as(out.distances)
    if distances == "used":
        loss = loss + (out.distances * weights).sum() + out.distances_in.pow(2).sum()
    elif distances == "zero":  # in the graph, but with an all-zero gradient
        loss = loss + 0.0 * (out.distances.sum() + out.distances_in.sum())
    loss.backward()
    values = [out.output, out.distances, out.distances_in, *(t for pair in out.hidden for t in pair), *out.outputs]
    grads = {name: p.grad for name, p in stack.named_parameters()}
    grads["x"] = x.grad
    if hidden is not None:
        for i, (h, c) in enumerate(hidden):
            grads[f"h{i}"], grads[f"c{i}"] = h.grad, c.grad
    return values, grads


def stack_pair(sizes, chunk, dropout, dropconnect, training, implementation="fused", device="cpu"):
    """(reference stack, ``implementation`` stack) with the same parameters."""
    torch.manual_seed(0)
    reference = ONLSTMStack(sizes, chunk, dropout=dropout, dropconnect=dropconnect, implementation="reference")
    fused = ONLSTMStack(sizes, chunk, dropout=dropout, dropconnect=dropconnect, implementation=implementation)
    reference, fused = reference.to(device), fused.to(device)
    fused.load_state_dict(reference.state_dict())
    return reference.train(training), fused.train(training)


def check_matches_reference(sizes, chunk, steps, batch, dropout, dropconnect, training, distances, implementation="fused", device="cpu"):
    """Outputs and every gradient of ``implementation`` equal the reference's (same masks)."""
    reference, fused = stack_pair(sizes, chunk, dropout, dropconnect, training, implementation, device)
    torch.manual_seed(2)
    x = torch.randn(steps, batch, sizes[0], device=device)
    hidden = [(torch.randn(batch, s, device=device), torch.randn(batch, s, device=device)) for s in sizes[1:]]
    ref_values, ref_grads = run_stack(reference, x, hidden, distances)
    values, grads = run_stack(fused, x, hidden, distances)
    for expected, actual in zip(ref_values, values):
        torch.testing.assert_close(actual, expected, **TOL)
    assert ref_grads.keys() == grads.keys()
    for name, expected in ref_grads.items():
        assert grads[name] is not None, name
        torch.testing.assert_close(grads[name], expected, **TOL, msg=lambda m: f"{name}: {m}")


def check_zero_state_and_inference(implementation: str, device: str = "cpu"):
    """With no hidden state given (zeros) the gradients match; in no_grad eval mode (the path
    that keeps no per-step buffers) outputs, distances and the final state match."""
    reference, fused = stack_pair([6, 12, 6], 3, 0.3, 0.4, True, implementation, device)
    x = torch.randn(7, 3, 6, device=device)
    ref_values, ref_grads = run_stack(reference, x, None, "unused")
    values, grads = run_stack(fused, x, None, "unused")
    for name, expected in ref_grads.items():
        torch.testing.assert_close(grads[name], expected, **TOL)
    reference.eval(), fused.eval()
    with torch.no_grad():  # the inference path keeps no (time, ...) buffers
        expected, actual = reference(x), fused(x)
    torch.testing.assert_close(actual.output, expected.output, **TOL)
    torch.testing.assert_close(actual.distances, expected.distances, **TOL)
    torch.testing.assert_close(actual.distances_in, expected.distances_in, **TOL)
    torch.testing.assert_close(actual.hidden[-1][1], expected.hidden[-1][1], **TOL)


# ----------------------------------------------------------------------------- run folders by hand
def fake_run(folder: Path, config: dict, metrics: dict | None, history: list[dict] = (), tables: dict = None,
             overrides: list[str] | None = None, commit: str = "abc123", entry: str | None = None) -> Path:
    """A run folder as train.py leaves it: .hydra/config.yaml (and overrides.yaml, hydra.yaml with the
    job's name when given), csv/metrics.csv, tables/, done.json naming ``commit`` (left out when
    ``metrics`` is None: an unfinished run)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if overrides is not None:
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if entry is not None:
        (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"name": entry}}}))
    if history:
        (folder / "csv").mkdir()
        keys = sorted({k for row in history for k in row})
        with open(folder / "csv" / "metrics.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(history)
    for name, rows in (tables or {}).items():
        (folder / "tables").mkdir(exist_ok=True)
        with open(folder / "tables" / f"{name}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if metrics is not None:
        record = {"finished": "2026-11-30T20:00:00+00:00", "commit": commit, "metrics": metrics,
                  "machine": {"device": "Test CPU", "torch": "2.13.0", "threads": "1"}}
        (folder / "done.json").write_text(json.dumps(record))
    return folder


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def committed_plan(root: Path, text: str) -> str:
    """A fresh git checkout at ``root`` whose only commit adds ``docs/preregistration.md`` with
    ``text``; the commit's short hash (what a run's done.json names)."""
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "preregistration.md").write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "plan")
    return git(root, "rev-parse", "--short=12", "HEAD")


# ----------------------------------------------------------------------------- checkpoints carrying code
class TouchPayload:
    """Unpickling this creates ``marker``: the proof that a checkpoint's code ran (the risk of the
    official code's whole-model pickles)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))
