"""Fixtures; the shared helpers are in tests/helpers.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Without an NVIDIA GPU, the Triton kernels (onlstm/ops/triton_kernels.py) are tested on CPU
# tensors through Triton's interpreter. It must be on before torch is imported: torch imports
# triton, whose language functions are decorated for the interpreter or the compiler right then.
if not Path("/dev/nvidiactl").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")

_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(_ROOT))
os.environ.setdefault("WANDB_MODE", "offline")
# make mutate runs the suite on mutmut's copy of the checkout, in its mutants/ folder
_UNDER_MUTMUT = _ROOT.name == "mutants"
_CHECKOUT = _ROOT.parent if _UNDER_MUTMUT else _ROOT
os.environ.setdefault("ONLSTM_DATA_DIR", str(_CHECKOUT.parent / "shared" / "data"))
if _UNDER_MUTMUT:
    # every mutated function is called through two more frames there: the recursive tree code of
    # the thousand-token ListOps tests needs three times the stack it needs outside
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

from tests.helpers import CHROMEDRIVER, compose_config  # noqa: E402


@pytest.fixture(autouse=True)
def _fast_torch():
    # OMP_NUM_THREADS when set: two threads on two busy cores spin in oneDNN's barriers (a tiny
    # LM run took twenty times longer with 2 threads than with 1 while other jobs held the cores)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1)))
    yield


@pytest.fixture
def make_cfg(tmp_path):
    def _make(overrides: list[str], subdir: str = "run", config_name: str = "config"):
        out = tmp_path / subdir
        out.mkdir(parents=True, exist_ok=True)
        return compose_config(overrides, out, config_name)

    yield _make
    GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def browser():
    """Headless chromium through selenium (tests that use it are marked ``tests.helpers.needs_browser``)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
