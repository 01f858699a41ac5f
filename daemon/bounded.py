"""Containers and log helpers whose size does not grow with what peers or devices send.

Anything keyed by something a peer chooses (a CURVE key, a socket identity, a topic
prefix) or that a device repeats (gaps, errors) is held here with a fixed bound, so a
flood costs a counter, not memory or a log line per event (docs/security.md "Limits").
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable
from typing import Any

import structlog


class LruCounter:
    """Counts per key for at most ``max_keys`` keys, least recently seen evicted first.

    ``total`` counts every event, ``evicted`` the keys forgotten to stay in bound.
    """

    def __init__(self, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._counts: OrderedDict[Hashable, int] = OrderedDict()
        self.total = 0
        self.evicted = 0

    def add(self, key: Hashable) -> int:
        """Count one event for ``key``; returns its count (1 for a new or evicted key)."""
        self.total += 1
        n = self._counts.pop(key, 0) + 1
        self._counts[key] = n
        if len(self._counts) > self.max_keys:
            self._counts.popitem(last=False)
            self.evicted += 1
        return n

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, key: object) -> bool:
        return key in self._counts

    def get(self, key: Hashable, default: int = 0) -> int:
        return self._counts.get(key, default)

    def values(self) -> Iterable[int]:
        return self._counts.values()


class BoundedList:
    """The last ``keep`` items appended, plus how many were appended in all."""

    def __init__(self, keep: int) -> None:
        self._items: deque[Any] = deque(maxlen=keep)
        self.appended = 0

    def append(self, item: Any) -> None:
        self._items.append(item)
        self.appended += 1

    @property
    def dropped(self) -> int:
        """Items no longer held."""
        return self.appended - len(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(self._items)[index]
        return self._items[index]


class RateLimitedLog:
    """At most ``burst`` log lines per ``window_s`` for one event name; the rest counted.

    When a window with suppressed lines ends, the next call logs one line saying how many
    were suppressed (``suppressed``), so the log shows the flood without growing with it.
    """

    def __init__(
        self,
        logger: Any,
        event: str,
        burst: int = 10,
        window_s: float = 10.0,
        level: str = "warning",
    ) -> None:
        self.logger = logger if logger is not None else structlog.get_logger("nirsd")
        self.event = event
        self.burst = burst
        self.window_s = window_s
        self.level = level
        self._window_start = -float("inf")
        self._in_window = 0
        self.suppressed = 0  # lines not written in the current window
        self.total = 0  # calls in all

    def __call__(self, **fields: Any) -> bool:
        """Log (or count) one event; True when a line was written."""
        self.total += 1
        now = time.monotonic()
        if now - self._window_start >= self.window_s:
            if self.suppressed:
                getattr(self.logger, self.level)(
                    self.event + "_suppressed", suppressed=self.suppressed, window_s=self.window_s
                )
            self._window_start, self._in_window, self.suppressed = now, 0, 0
        if self._in_window >= self.burst:
            self.suppressed += 1
            return False
        self._in_window += 1
        getattr(self.logger, self.level)(self.event, **fields)
        return True
