"""Errors that reach the user as one clear line (no traceback) and a non-zero exit."""

from __future__ import annotations

import functools
import sys
from typing import Callable, Iterable, TypeVar

from rdskd_dist.redact import redact

F = TypeVar("F", bound=Callable[..., object])


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2, no traceback."""


class UnknownNameError(UserError, KeyError):
    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        self._init_args = (kind, name, tuple(valid))
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(sorted(self._init_args[2]))}")

    def __reduce__(self):  # picklable across processes (Ray workers) despite the three-argument __init__
        return (type(self), self._init_args)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or inf: training stops and names the step and the term."""

    def __init__(self, step: int, term: str):
        self.step, self.term = step, term
        super().__init__(f"loss term {term!r} became NaN or inf at step {step}")

    def __reduce__(self):  # picklable across processes (Ray workers) despite the two-argument __init__
        return (type(self), (self.step, self.term))


def one_line(exc: BaseException) -> str:
    """The message on one line, credentials masked (every user-facing error and warning goes through here)."""
    return redact(" ".join(str(exc).split())) or type(exc).__name__


def cli_entrypoint(fn: F) -> F:
    """Run a CLI main: user errors and non-finite losses become `error: ...` on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (UserError, NonFiniteLossError) as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
