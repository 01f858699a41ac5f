"""Shared machinery for line-oriented text protocols (HEG, delimited text).

:class:`LineParser` splits bytes on ``\\n`` (``\\r\\n`` is one terminator), skips the
first, possibly partial line unless told the stream starts clean, and drops any
undelimited run longer than :data:`MAX_LINE` as garbage.  Subclasses turn runs of lines
into samples: a vectorised fast path for runs of clean lines (numbers parsed in C by
``numpy.fromstring``) and an exact per-line path, which is the reference: a line the
fast path rejects is always re-checked by the per-line path.
"""

from __future__ import annotations

import re

import numpy as np

from .base import Frame, Parser

#: longest line kept while waiting for its ``\n`` (bytes); longer runs are garbage
MAX_LINE = 4096

def parse_numbers(text: bytes, count: int) -> np.ndarray | None:
    """Exactly ``count`` numbers from whitespace-separated ``text``, or None.

    ``text`` must hold number tokens only (the caller matched each line against a strict
    pattern), so ``numpy.fromstring`` parses all of them in C.
    """
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(text, dtype=np.float64, sep=" ")  # noqa: NPY201
        except (ValueError, DeprecationWarning):
            return None
    if values.size != count:
        return None
    return values


_POW10 = 10.0 ** np.arange(20)


def parse_digit_tokens(text: bytes, count: int) -> np.ndarray | None:
    """Exactly ``count`` unsigned integers from ``text`` (float64), or None.

    ``text`` must be runs of ASCII digits (at most 15 each) separated by single spaces,
    as left by a strict line pattern; the digits are summed by place value in numpy,
    which is several times faster than ``numpy.fromstring``.
    """
    a = np.frombuffer(text, np.uint8)
    sep = a == 0x20
    starts = np.flatnonzero(np.concatenate(([True], sep[:-1]))) if a.size else a
    if starts.size != count:
        return None
    digit = ~sep
    idx = np.flatnonzero(digit)
    token = np.cumsum(sep)[idx]
    ends = np.flatnonzero(np.concatenate((sep[1:], [True])))  # last digit of each token
    place = ends[token] - idx
    return np.bincount(token, weights=(a[idx] - 48) * _POW10[place], minlength=count)


class LineParser(Parser):
    """Bytes -> lines -> frames; subclasses implement :meth:`_parse_lines`.

    Counters: ``lines_skipped`` for every non-empty line that is not a sample (the first
    partial line, banners, debug text, headers, corrupt lines); ``garbage_bytes`` for
    the bytes of those lines including their terminator, and for over-long runs.
    """

    #: a clean data line, matched whole (no groups): the fast path only takes these
    fast_line: re.Pattern[bytes] | None = None

    def __init__(self, synced: bool = False) -> None:
        super().__init__()
        if self.fast_line is not None:
            self.fast_all = re.compile(b"^(?:" + self.fast_line.pattern + b")$", re.M)
        self._pending = b""
        self._synced = synced  # False: the first line may be a cut one, drop it
        self._skipping = False

    def feed(self, data: bytes) -> list[Frame]:
        """Consume bytes (any split) and return the samples of the lines they complete."""
        if not data:
            return []
        buf = self._pending + bytes(data) if self._pending else bytes(data)
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")  # a "\r" left at the end joins the next feed
        lines = buf.split(b"\n")
        self._pending = lines.pop()
        c = self.counters
        start = 0
        if lines and (self._skipping or not self._synced):
            if lines[0].strip() or not self._synced:
                c.garbage_bytes += len(lines[0]) + 1
                c.lines_skipped += 1
            start = 1
            self._skipping = False
            self._synced = True
        out: list[Frame] = self._parse_lines(lines[start:] if start else lines) \
            if len(lines) > start else []
        if len(self._pending) > MAX_LINE:
            c.garbage_bytes += len(self._pending)
            self._pending = b""
            self._skipping = True
        elif self._skipping and self._pending:
            c.garbage_bytes += len(self._pending)
            self._pending = b""
        c.frames_ok += len(out)
        return out

    def _parse_lines(self, lines: list[bytes]) -> list[Frame]:
        """Frames from complete lines (terminators removed)."""
        clean = self._clean_mask(lines)
        out: list[Frame] = []
        i, n = 0, len(lines)
        while i < n:
            if clean[i]:
                j = i + 1
                while j < n and clean[j]:
                    j += 1
                frames = self._parse_run(lines[i:j])
                for k, frame in enumerate(frames):
                    if frame is None:
                        frame = self._line(lines[i + k])
                    if frame is not None:
                        out.append(frame)
                i = j
            else:
                frame = self._line(lines[i])
                if frame is not None:
                    out.append(frame)
                i += 1
        return out

    def _line(self, line: bytes) -> Frame | None:
        """The per-line path, counting what it rejects."""
        line = line.rstrip(b"\r")
        if not line.strip():
            return None  # blank line: neither a sample nor an error
        frame = self._parse_line(line)
        if frame is None:
            self.counters.lines_skipped += 1
            self.counters.garbage_bytes += len(line) + 1
        return frame

    def _clean_mask(self, lines: list[bytes]) -> list[bool]:
        """Lines eligible for the fast path: those matching ``fast_line`` exactly.

        One regex pass over the joined lines decides the common all-clean case; only
        when some line fails is each line matched on its own.
        """
        if self.fast_line is None:
            return [False] * len(lines)
        if len(self.fast_all.findall(b"\n".join(lines))) == len(lines):
            return [True] * len(lines)
        return [m is not None for m in map(self.fast_line.fullmatch, lines)]

    def _parse_run(self, lines: list[bytes]) -> list[Frame | None]:
        """Fast path for clean lines; None entries go to the per-line path."""
        return [None] * len(lines)

    def _parse_line(self, line: bytes) -> Frame | None:
        raise NotImplementedError
