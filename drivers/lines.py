"""Shared machinery for line-oriented text protocols (HEG, delimited text).

:class:`LineParser` splits bytes on ``\\n`` (``\\r\\n`` is one terminator), skips the
first, possibly partial line unless told the stream starts clean, and drops any
undelimited run longer than :data:`MAX_LINE` as garbage.  Subclasses turn runs of lines
into samples: a vectorised fast path that turns a whole chunk of clean lines into one
:class:`~nirsd.drivers.base.SampleBlock` (numbers parsed in numpy, no Python object per
line), and an exact per-line path, which is the reference: a line the fast path
rejects is always re-checked by the per-line path.
"""

from __future__ import annotations

import re

import numpy as np

from .base import Frame, Parser, SampleBlock, expand_blocks

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


_POW10_INT = 10 ** np.arange(19, dtype=np.int64)
_DIGIT = np.zeros(256, np.int64)
_DIGIT[48:58] = np.arange(10)


def parse_int_tokens(text: bytes, count: int, max_digits: int = 15) -> np.ndarray | None:
    """Exactly ``count`` integers from ``text`` (float64), or None.

    ``text`` must be tokens of the form ``[-+]?\\d+`` separated by runs of spaces, as left
    by a strict line pattern and a ``bytes.translate`` of the separators; a token of more
    than ``max_digits`` (at most 15) digits gives None.  Each digit is weighted by its
    place value and each token summed in int64 with ``numpy.add.reduceat``: exact, and
    several times faster than ``numpy.fromstring``.
    """
    a = np.frombuffer(b" " + text + b" ", np.uint8)
    tok = a != 0x20
    edge = np.flatnonzero(tok[1:] != tok[:-1]) + 1
    starts, stops = edge[0::2], edge[1::2]  # first byte and one past the last, per token
    if starts.size != count:
        return None
    if count == 0:
        return np.zeros(0)
    lengths = stops - starts
    signed = None
    if lengths.max() > max_digits:
        signed = (a[starts] == 0x2D) | (a[starts] == 0x2B)
        if (lengths - signed > max_digits).any():
            return None
    idx = np.flatnonzero(tok)
    place = np.repeat(stops - 1, lengths) - idx
    weighted = _DIGIT[a[idx]] * _POW10_INT[place]  # a sign weighs 0
    values = np.add.reduceat(weighted, np.cumsum(lengths) - lengths).astype(np.float64)
    neg = a[starts] == 0x2D
    if neg.any():
        values[neg] *= -1.0
    return values


class LineParser(Parser):
    """Bytes -> lines -> frames; subclasses implement :meth:`_parse_line`, and for speed
    :meth:`_parse_block`.

    Counters: ``lines_skipped`` for every non-empty line that is not a sample (the first
    partial line, banners, debug text, headers, corrupt lines); ``garbage_bytes`` for
    the bytes of those lines including their terminator, and for over-long runs.
    """

    #: a clean data line, matched whole (no groups): the fast paths only take these
    fast_line: re.Pattern[bytes] | None = None

    def __init__(self, synced: bool = False) -> None:
        super().__init__()
        if self.fast_line is not None:
            self.fast_all = re.compile(b"^(?:" + self.fast_line.pattern + b")$", re.M)
            self.fast_body = re.compile(b"(?:(?:" + self.fast_line.pattern + b")\r?\n)+")
        self._pending = b""
        self._synced = synced  # False: the first line may be a cut one, drop it
        self._skipping = False

    def feed(self, data: bytes) -> list[Frame]:
        """Consume bytes (any split) and return the samples of the lines they complete."""
        return expand_blocks(self.feed_blocks(data))

    def feed_blocks(self, data: bytes) -> list[Frame]:
        """As :meth:`feed`; a chunk of only clean lines gives one :class:`SampleBlock`."""
        if type(self).feed is not LineParser.feed:  # a subclass that parses by itself
            return self.feed(data)
        if not data:
            return []
        buf = self._pending + bytes(data) if self._pending else bytes(data)
        last = buf.rfind(b"\n")
        if last < 0:
            body, self._pending = b"", buf
        else:
            body, self._pending = buf[: last + 1], buf[last + 1 :]
        c = self.counters
        if body and (self._skipping or not self._synced):
            cut = body.find(b"\n")
            first = body[:cut]
            if first.strip() or not self._synced:
                c.garbage_bytes += len(first) - first.endswith(b"\r") + 1
                c.lines_skipped += 1
            body = body[cut + 1 :]
            self._skipping = False
            self._synced = True
        out = self._parse_body(body) if body else []
        if len(self._pending) > MAX_LINE:
            c.garbage_bytes += len(self._pending)
            self._pending = b""
            self._skipping = True
        elif self._skipping and self._pending:
            c.garbage_bytes += len(self._pending)
            self._pending = b""
        c.frames_ok += sum(len(f) if type(f) is SampleBlock else 1 for f in out)
        return out

    def _parse_body(self, body: bytes) -> list[Frame]:
        """Frames from complete lines, each ending in ``\\n`` or ``\\r\\n``."""
        parsed = self._clean_block(body, body.count(b"\n"))
        if parsed is not None and parsed[1].all():
            return [parsed[0]]
        if b"\r" in body:
            body = body.replace(b"\r\n", b"\n")
        lines = body.split(b"\n")
        lines.pop()  # empty: the body ends with a terminator
        return self._parse_lines(lines)

    def _parse_lines(self, lines: list[bytes]) -> list[Frame]:
        """Samples from complete lines (terminators removed), one :class:`Sample` each."""
        clean = self._clean_mask(lines)
        out: list[Frame] = []
        i, n = 0, len(lines)
        while i < n:
            if clean[i]:
                j = i + 1
                while j < n and clean[j]:
                    j += 1
                parsed = self._parse_block(b"\n".join(lines[i:j]) + b"\n", j - i)
                for k, good in enumerate(
                    [False] * (j - i) if parsed is None else parsed[1].tolist()
                ):
                    frame = (
                        parsed[0].sample(k)
                        if good and parsed is not None
                        else self._line(lines[i + k])
                    )
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

    def _clean_block(self, body: bytes, n: int) -> tuple[SampleBlock, np.ndarray] | None:
        """:meth:`_parse_block` of ``body`` if all its ``n`` lines are clean, else None.

        The default matches ``body`` whole against ``fast_line``; subclasses may check
        with cheaper patterns when :meth:`_parse_block` checks what those leave out.
        """
        if self.fast_line is None or not self.fast_body.fullmatch(body):
            return None
        return self._parse_block(body, n)

    def _parse_block(self, body: bytes, n: int) -> tuple[SampleBlock, np.ndarray] | None:
        """Vectorised path for ``n`` lines that each match ``fast_line``.

        ``body`` holds the lines, each ending in ``\\n`` or ``\\r\\n``.  Returns a block of
        all ``n`` rows and a bool mask of the rows that are samples (the others go to the
        per-line path, the reference), or None to send every line there.
        """
        return None

    def _parse_line(self, line: bytes) -> Frame | None:
        raise NotImplementedError
