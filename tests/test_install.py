"""Installing: the declared torch / Lightning ranges, the repository's CPU-wheel pin, console scripts.

A researcher installs into an environment that already holds the torch their CUDA driver needs;
`pip install -e .` there must keep it. These tests check that from the package's own files and
with pip itself (offline: `--no-index`, everything the package needs is already installed).
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import sysconfig
import tomllib
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.helpers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared(name: str) -> Requirement:
    found = [Requirement(r) for r in PYPROJECT["project"]["dependencies"] if Requirement(r).name == name]
    assert len(found) == 1, f"pyproject.toml: expected one requirement on {name}, found {found}"
    return found[0]


def constraint_pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"constraints.txt: {line!r} should pin one version"
            pins[requirement.name] = Version(spec.version)
    return pins


@pytest.mark.parametrize("name", ["torch", "pytorch-lightning"])
def test_installed_version_is_inside_the_declared_range(name):
    """This environment is one the package claims to support, so pip would keep its torch."""
    requirement = declared(name)
    installed = Version(version(name))
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{name} {installed} is installed but pyproject.toml declares {requirement}"
    )


def test_torch_is_a_range_and_the_pinned_cpu_wheel_lies_inside_it():
    """pyproject.toml must not pin torch exactly (an exact pin replaces a researcher's torch);
    constraints.txt pins the CPU build for this project's own installs, within the range."""
    specifier = declared("torch").specifier
    assert all(s.operator != "==" for s in specifier), f"pyproject.toml pins torch exactly: {specifier}"
    pinned = constraint_pins()["torch"]
    assert pinned.local == "cpu", f"constraints.txt pins torch {pinned}, not a CPU build"
    assert specifier.contains(pinned), f"constraints.txt pins torch {pinned} outside pyproject.toml's {specifier}"


def test_readme_states_the_declared_torch_range_and_tested_version():
    readme = (ROOT / "README.md").read_text()
    stated = [SpecifierSet(s) for s in re.findall(r"`torch\s*([<>=~!][^`]*)`", readme)]
    assert declared("torch").specifier in stated, f"README: state the declared torch range {declared('torch')}"
    tested = re.search(r"[Tt]ested on torch ([0-9.]+)", readme)
    assert tested, "README: say which torch versions were tested"
    assert tested.group(1) == constraint_pins()["torch"].public, "README: the tested torch is the one constraints.txt pins"


def test_pip_install_into_this_environment_keeps_its_torch(tmp_path):
    """What `pip install -e .` would do here, asked of pip itself: install this package and nothing
    else (--no-index: everything it depends on must already be satisfied by what is installed)."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
         "--disable-pip-version-check", "--quiet", "--report", str(report), "-e", f"{ROOT}[dev]"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"pip could not satisfy the package from this environment:\n{proc.stderr[-3000:]}"
    would_install = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert would_install == {"onlstm"}, f"pip would also install {sorted(would_install - {'onlstm'})}"


@pytest.mark.parametrize("script", sorted(PYPROJECT["project"]["scripts"]))
def test_console_scripts_point_at_callables(script):
    module_name, _, attribute = PYPROJECT["project"]["scripts"][script].partition(":")
    assert callable(getattr(importlib.import_module(module_name), attribute))


@pytest.mark.skipif(sys.platform == "win32", reason="the venv layout below is the POSIX one")
def test_console_scripts_installed_into_an_environment_answer_help(tmp_path):
    """`pip install -e .` into a fresh environment (which sees this one's packages through a .pth
    file, so nothing is downloaded), then each console script run from another folder."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    # every site folder this interpreter sees (also those an environment layered like this one adds)
    sites = dict.fromkeys([sysconfig.get_paths()["purelib"], *(p for p in sys.path if p.endswith("site-packages"))])
    (site / "base_environment.pth").write_text("".join(f"{p}\n" for p in sites))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-deps",
         "--no-index", "--no-build-isolation", "--disable-pip-version-check", "-e", str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    scripts = sorted(PYPROJECT["project"]["scripts"])
    running = {s: subprocess.Popen([venv / "bin" / s, "--help"], cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for s in scripts}  # fmt: skip
    for script, process in running.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"{script} --help:\n{err[-3000:]}"
        hydra_entry = script in ("onlstm-train", "onlstm-eval")  # the others are argparse commands
        assert ("powered by Hydra" if hydra_entry else f"usage: {script}") in out, out[-2000:]


def test_the_gpu_session_runs_the_gpu_suite_the_testing_guide_lists():
    """A lent GPU's minutes go to benchmarks/gpu_session.sh: the test files it runs are those that
    docs/testing.md names as the GPU suite, and each exists (a renamed file once made it run none)."""
    script = (ROOT / "benchmarks" / "gpu_session.sh").read_text()
    guide_row = next(line for line in (ROOT / "docs" / "testing.md").read_text().splitlines()
                     if line.startswith("| GPU |"))
    listed = re.findall(r"tests/test_\w+\.py", guide_row)
    assert re.findall(r"tests/test_\w+\.py", script) == listed
    assert listed and all((ROOT / path).is_file() for path in listed)
