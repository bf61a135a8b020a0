"""The one error type a user sees: bad config, unknown names, missing data, malformed files."""

from __future__ import annotations

import functools
import sys
from pathlib import Path


class KanbenchError(Exception):
    """A problem with what the user gave. Scripts print it as one line and exit 2."""


def one_line_errors(main):
    """Wrap a script's main so a KanbenchError becomes `error: ...` on stderr and exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except KanbenchError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def regular_file(path: Path, owner: str = "") -> Path:
    """`path`, once it is a regular file: a folder or a FIFO given where a file is read would
    fail deep in a reader, or block it. Else a KanbenchError, led by `owner` when given
    (`mnist: data/MNIST/raw/...: not a regular file`)."""
    if not path.is_file():
        raise KanbenchError(f"{owner + ': ' if owner else ''}{path}: not a regular file")
    return path


def first_line(err: BaseException) -> str:
    """`Type: first line of the message`, for errors whose messages run to many lines."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
