"""Build and load the CPU kernels (``onlstm/ops/csrc/onlstm_cpu.c``) with the system C compiler.

The library is compiled once per machine (plain C, no PyTorch headers) into a cache folder and
loaded with ctypes; nothing calls it but the registered ops of :mod:`onlstm.ops.cpu`, which
check every argument first. Why not ``torch.utils.cpp_extension`` (the ecosystem's tool): its
first use compiles against the torch headers, measured at about ten seconds for a minimal
``TORCH_LIBRARY`` file against half a second for this build, and another compiler mode (C++)
could change the float32 rounding of the kernels, which the experiments run so far must keep;
docs/performance.md ("Why plain C and ctypes") has the measurement. Building at install time
instead would need torch inside pip's isolated build environment (the multi-GB CUDA wheel).

* cache: ``$ONLSTM_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/onlstm``, else ``~/.cache/onlstm``; the
  file name hashes the source, the flags, the compiler and the CPU's feature flags
  (``-march=native``), so a home folder shared by different machines keeps one build per CPU kind.
* compiler: ``$CC``, else ``cc``. Where there is none (or it fails) :func:`library` returns None
  and the ``fused`` implementation falls back to PyTorch ops, with one warning that says why.
* ``ONLSTM_CPU_KERNEL=0`` turns the kernels off (``fused`` then uses PyTorch ops).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "onlstm_cpu.c"
# -fno-trapping-math lets GCC vectorise floorf; nothing here relies on floating-point traps
FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-std=gnu11", "-shared", "-fPIC", "-pthread"]


class KernelBuildError(RuntimeError):
    """The C compiler is missing or failed; the message says which and what to do."""


def cache_dir() -> Path:
    if os.environ.get("ONLSTM_KERNEL_CACHE"):
        return Path(os.environ["ONLSTM_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "onlstm"


def _cpu_flags() -> str:
    """The CPU's feature flags (what -march=native compiles for); the machine name elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def build(compiler: str | None = None) -> Path:
    """The path of the compiled library, compiling it first if the cache does not hold it."""
    compiler = compiler or os.environ.get("CC") or "cc"
    path = shutil.which(compiler)
    if path is None:
        raise KernelBuildError(
            f"no C compiler {compiler!r} on PATH to build {SOURCE.name}: install one (gcc or clang; "
            "or set CC), or use run.implementation=fused_aten"
        )
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *FLAGS, path, version, _cpu_flags()]).encode())
    target = cache_dir() / f"onlstm_cpu-{key.hexdigest()[:16]}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # compile beside the target and rename: concurrent processes never load a half-written file
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([path, *FLAGS, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True)
        if done.returncode != 0:
            raise KernelBuildError(
                f"compiling {SOURCE} with {path} failed:\n{done.stderr.strip()}\n"
                "fix the compiler setup (or set CC), or use run.implementation=fused_aten"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.onlstm_forward_step.argtypes = [i64, i64, i64] + [ptr] * 10
    lib.onlstm_forward_step.restype = None
    lib.onlstm_backward_step.argtypes = [i64, i64, i64] + [ptr] * 11
    lib.onlstm_backward_step.restype = None
    lib.onlstm_subnormals_off.argtypes = []
    lib.onlstm_subnormals_off.restype = ctypes.c_uint
    lib.onlstm_restore_fp_mode.argtypes = [ctypes.c_uint]
    lib.onlstm_restore_fp_mode.restype = None
    lib.onlstm_transpose.argtypes = [i64, i64, ptr, ptr, i64]
    lib.onlstm_transpose.restype = None
    lib.onlstm_dropconnect.argtypes = [i64, ctypes.c_uint64, ctypes.c_float, ptr, ptr]
    lib.onlstm_dropconnect.restype = None
    return lib


@functools.cache
def _build_and_load() -> tuple[ctypes.CDLL | None, str | None]:
    """(library, None) or (None, why not); built and loaded once per process."""
    try:
        return _load(build()), None
    except (KernelBuildError, OSError) as error:
        log.warning("CPU kernels unavailable, the fused recurrence and DropConnect use PyTorch ops (slower): %s", error)
        return None, str(error)


def disabled() -> bool:
    return os.environ.get("ONLSTM_CPU_KERNEL", "1") == "0"


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (turned off, or no working compiler: warned once)."""
    return None if disabled() else _build_and_load()[0]


def require() -> ctypes.CDLL:
    """The kernels, or an error that says why not (for an explicit ``fused_cpu``)."""
    if disabled():
        raise RuntimeError("implementation 'fused_cpu' asked for, but ONLSTM_CPU_KERNEL=0 turns the kernels off")
    lib, error = _build_and_load()
    if lib is None:
        raise KernelBuildError(error)
    return lib
