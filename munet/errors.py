"""Bad-input errors, and a short report of them instead of two chained tracebacks.

Every error about the user's data (a datalist that cannot be read, an image that cannot be
loaded, a list of unusable cases) derives from :class:`BadInputError`. Such errors are raised
inside config expressions, which ``python -m monai.bundle run`` evaluates and wraps in
``RuntimeError('Failed to evaluate ConfigExpression ...')``: the user then got about 80 lines,
two tracebacks, the useful list of files in the middle. :func:`install_excepthook` (run when
``bundle`` is imported, which every config does first) replaces that by the error's own message
on stderr, and the process still exits with status 1. Any other exception keeps its traceback;
``MUNET_TRACEBACK=1`` keeps it for bad input too.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Optional, Type

__all__ = ["BadInputError", "bad_input_in_chain", "report_bad_input", "install_excepthook", "TRACEBACK_ENV"]

#: Environment variable that restores the full traceback for bad-input errors.
TRACEBACK_ENV = "MUNET_TRACEBACK"


class BadInputError(ValueError):
    """A problem with the user's input files; the message alone says which file and what is wrong.

    A ``ValueError`` so existing ``except ValueError`` handlers (MONAI Label's) still catch it.
    """


def bad_input_in_chain(error: Optional[BaseException]) -> Optional[BadInputError]:
    """The first :class:`BadInputError` in ``error``'s chain (``__cause__``/``__context__``), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, BadInputError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def report_bad_input(error: BaseException, stream=None) -> bool:
    """Write ``error: <message>`` for a bad-input chain to ``stream`` (stderr); False if it is none."""
    bad = bad_input_in_chain(error)
    if bad is None:
        return False
    stream = stream if stream is not None else sys.stderr
    stream.write(f"error: {bad}\n")
    stream.flush()
    return True


_PREVIOUS_HOOK = None


def _excepthook(exc_type: Type[BaseException], exc: BaseException, tb: Optional[TracebackType]) -> None:
    if os.environ.get(TRACEBACK_ENV, "") in ("", "0") and report_bad_input(exc):
        return  # the interpreter exits with status 1 after an uncaught exception either way
    (_PREVIOUS_HOOK or sys.__excepthook__)(exc_type, exc, tb)


def install_excepthook() -> None:
    """Report uncaught bad-input errors in short (idempotent; chains to the previous hook)."""
    global _PREVIOUS_HOOK
    if sys.excepthook is _excepthook:
        return
    _PREVIOUS_HOOK = sys.excepthook
    sys.excepthook = _excepthook
