"""How an exception becomes the one-line "first error" shown in the matrix."""

from __future__ import annotations

from compat_tests.model import CheckFailed


def first_error(exc: BaseException) -> str:
    if isinstance(exc, CheckFailed):
        return str(exc)
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text else type(exc).__name__
