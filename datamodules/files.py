"""Reading data files with errors that say which file, which line and what to do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

DATA_DIR_HINT = (
    "set the data root with the environment variable ONLSTM_DATA_DIR=/path/to/data "
    "or the override paths.data_dir=/path/to/data"
)


class DataError(ValueError):
    """Bad or missing input data; the message names the file (and line) and the fix."""


def require_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{what} folder not found: {path} ({DATA_DIR_HINT})")
    return path


def require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        hint = DATA_DIR_HINT if not path.parent.is_dir() else f"the folder {path.parent} exists but has no {path.name}"
        raise DataError(f"{what} file not found: {path} ({hint})")
    return path


def read_lines(path: str | Path, what: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without newline) of a UTF-8 text file.

    A byte that is not UTF-8 raises :class:`DataError` naming the file, the line and the byte
    offset, instead of a bare UnicodeDecodeError deep inside a training run.
    """
    path = require_file(path, what)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{path}:{number}: not valid UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1}); "
                    "re-encode the file as UTF-8"
                ) from None
            yield number, line.rstrip("\r\n")
