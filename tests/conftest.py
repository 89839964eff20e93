"""Shared fixtures: the real Hydra config, composed and shrunk for fast runs on a CPU."""

from __future__ import annotations

import os
from pathlib import Path

# Without an NVIDIA GPU, the Triton kernels (onlstm/triton_recurrence.py) are tested on CPU
# tensors through Triton's interpreter. It must be on before torch is imported: torch imports
# triton, whose language functions are decorated for the interpreter or the compiler right then.
if not Path("/dev/nvidiactl").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("WANDB_MODE", "offline")
SHARED_DATA = ROOT.parent / "shared" / "data"
os.environ.setdefault("ONLSTM_DATA_DIR", str(SHARED_DATA))

import train  # noqa: F401, E402  (registers schemas and resolvers)

DATA_DIR = Path(os.environ["ONLSTM_DATA_DIR"])

# a backbone small enough for seconds-long runs; same code paths as the paper's
TINY_MODEL = [
    "model.emb_size=16",
    "model.hidden_size=32",
    "model.n_layers=2",
    "model.chunk_size=4",
]

# the Marvin & Linzen suite with limit_per_condition=1 (data README, section 4): 8 files with 2
# conditions, 14 with 4, in 15 reporting groups
SYNEVAL_ITEMS_ONE_PER_CONDITION = 8 * 2 + 14 * 4
SYNEVAL_GROUPS = 15


def requires_data(*relative: str):
    missing = [p for p in relative if not (DATA_DIR / p).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"data not found under {DATA_DIR}: {missing}")


@pytest.fixture(autouse=True)
def _fast_torch():
    # OMP_NUM_THREADS when set: two threads on two busy cores spin in oneDNN's barriers (a tiny
    # LM run measured 53 s with 2 threads, 2.5 s with 1, while other jobs held the cores)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1)))
    yield


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """The real config (conf/config.yaml) with overrides, its outputs under ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
    return cfg


@pytest.fixture
def make_cfg(tmp_path):
    def _make(overrides: list[str], subdir: str = "run") -> DictConfig:
        out = tmp_path / subdir
        out.mkdir(parents=True, exist_ok=True)
        return compose_config(overrides, out)

    yield _make
    GlobalHydra.instance().clear()
