"""The loop's guard: an exception from one frame or one request is counted, not fatal.

The acquisition loop wraps each unit of work (the frames of one read, the requests of
one poll, one subscription read) in :meth:`LoopGuard.run`.  An exception there is
counted by kind (``ExceptionType@where``), logged with its traceback the first time
that kind is seen and then only counted, and the loop goes on with the next unit.
``status`` shows the counts under ``counters.loop_errors`` and the newest one in
``last_loop_error``.  Kinds are bounded (:data:`MAX_KINDS`), so even an attacker who
found many distinct failures could not grow the table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from .bounded import LruCounter

log = structlog.get_logger("nirsd.loop")

MAX_KINDS = 64


class LoopGuard:
    def __init__(self) -> None:
        self.kinds = LruCounter(MAX_KINDS)
        self.last_error: str | None = None

    @property
    def errors(self) -> int:
        """Exceptions caught so far."""
        return self.kinds.total

    def run(self, where: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``; an exception is counted and logged once per kind, then None."""
        try:
            return fn(*args)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as err:
            self.note(where, err)
            return None

    def note(self, where: str, err: BaseException) -> None:
        kind = f"{type(err).__name__}@{where}"
        self.last_error = f"{where}: {type(err).__name__}: {str(err)[:200]}"
        if self.kinds.add(kind) == 1:
            log.error("loop_error", where=where, kind=kind, exc_info=err)

    def status(self) -> dict[str, Any]:
        return {"loop_errors": self.errors}
