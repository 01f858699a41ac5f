"""Fault-injection suite: each case counts what it tried, what the daemon survived and
how many accepted samples were lost, and reports a row to the summary table
(tests/fault_report.py).

Accepted samples are the ones the daemon published with a ``seq``.  "Lost" counts those
a client never got, live or backfilled from ``history``: it must be 0 in every case.
Everything is real: ptys, ``nirsd run`` subprocesses, ZeroMQ sockets, SNIRF files read
back by h5py and the snirf validator.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from nirsd.cli.testing import (
    Collector,
    DaemonProcess,
    device_config,
    finish,
    simulated_config,
    start_recorder,
    wait_for,
)
from nirsd.core.errors import NirsdError
from nirsd.daemon import wire
from nirsd.drivers.sim.emulator import Emulator, Faults
from nirsd.drivers.sim.heg_emulator import HegEmulator

pytestmark = pytest.mark.faults
HAS_SNIRF = importlib.util.find_spec("h5py") and importlib.util.find_spec("snirf")
needs_snirf = pytest.mark.skipif(not HAS_SNIRF, reason="needs h5py and snirf")


# ---------------------------------------------------------------------- helpers


def collect(daemon: DaemonProcess, topics=("raw", "status")) -> Collector:
    """The shared collector on ``daemon``: raw samples by seq, status events, latencies."""
    return Collector(daemon.subscriber(topics))


def device_samples_only(stream: Collector, emu: Emulator) -> bool:
    """Every published sample is one the device produced, in order, none twice."""
    seqs = sorted(stream.raw)
    raw = np.stack([stream.raw[s] for s in seqs])
    produced = emu.physiology.counts(np.arange(emu.samples_sent)).astype(np.float64)
    flat = produced.reshape(len(produced), -1)
    index = {row.tobytes(): k for k, row in enumerate(flat)}
    ks = [index.get(r.reshape(-1).tobytes(), -1) for r in raw]
    return min(ks) >= 0 and all(b > a for a, b in zip(ks, ks[1:]))


def device_outcome(
    stream: Collector, proc: DaemonProcess, emu: Emulator
) -> tuple[dict, int, bool, bool]:
    """After a device fault: the daemon's status, the accepted samples ``stream`` lost,
    whether every published sample is the device's own, whether the daemon runs."""
    status, lost, alive = daemon_outcome(stream, proc)
    return status, lost, device_samples_only(stream, emu), alive


def daemon_outcome(stream: Collector, proc: DaemonProcess) -> tuple[dict, int, bool]:
    """After a fault: the daemon's status, the accepted samples ``stream`` lost (after
    catching up), whether the daemon still runs."""
    status = proc.control().status()
    lost = stream.lost()
    return status, lost, proc.proc.poll() is None


def stop_all(stream: Collector, proc: DaemonProcess, emu: Emulator) -> None:
    """Close the client, stop the daemon and the emulator."""
    stream.close()
    proc.stop()
    emu.stop()


def device_k(emu: Emulator, sample: np.ndarray) -> int:
    """The device's index k of a published raw sample (its counts are unique)."""
    produced = emu.physiology.counts(np.arange(emu.samples_sent)).astype(np.float64)
    return int(np.flatnonzero((produced == sample).all(axis=(1, 2)))[0])


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q)) if len(values) else float("nan")


def emulated(
    tmp_path: Path, emu: Emulator, driver: str = "nirsb", extra: str = "", wait: bool = True
) -> DaemonProcess:
    port = emu.start()
    proc = DaemonProcess(tmp_path, device_config(emu.link or port, driver, 0.5, extra))
    try:
        proc.start(wait_streaming=wait, timeout=20)
    except BaseException:
        proc.stop()
        emu.stop()
        raise
    return proc


# ---------------------------------------------------------------------- device faults


def test_unplug_replug_20_cycles(tmp_path, fault_report):
    cycles, outage = 20, 0.3
    emu = Emulator(n_channels=2, rate_hz=50.0, link=str(tmp_path / "probe"))
    proc = emulated(tmp_path, emu)
    stream = collect(proc)
    survived, resume = 0, []
    try:
        stream.until(lambda: len(stream.raw) >= 10, what="samples before the first unplug")
        for _ in range(cycles):
            before = emu.replugged_at
            emu.unplug(outage)
            wait_for(lambda: emu.replugged_at != before and emu.streaming, 10, what="replug")
            n0 = len(stream.raw)
            stream.until(lambda: len(stream.raw) >= n0 + 5, 10, "samples after replug")
            resume.append(time.monotonic() - emu.stream_t0)
            survived += proc.proc.poll() is None
        status, lost, clean, _ = device_outcome(stream, proc, emu)
    finally:
        stop_all(stream, proc, emu)
    seqs = sorted(stream.raw)
    gaps = [g for g in stream.status("gap") if g.get("cause") == "disconnect"]
    fault_report(
        "unplug/replug (0.3 s outages)",
        cycles,
        survived,
        lost,
        f"reconnects {status['counters']['reconnects']}, disconnect gaps "
        f"{len(gaps)}, 5 samples back within {max(resume):.2f} s (max)",
    )
    assert emu.error is None and survived == cycles
    assert status["counters"]["reconnects"] == cycles and len(gaps) == cycles
    assert seqs == list(range(len(seqs))) and lost == 0 and clean


def test_corrupt_bytes_one_percent(tmp_path, fault_report):
    emu = Emulator(n_channels=4, rate_hz=100.0, faults=Faults(corrupt_rate=0.01, seed=8))
    proc = emulated(tmp_path, emu)
    stream = collect(proc)
    try:
        stream.until(lambda: len(stream.raw) >= 400, 30, "400 intact samples")
        status, lost, clean, alive = device_outcome(stream, proc, emu)
    finally:
        stop_all(stream, proc, emu)
    c = status["counters"]
    bad = c["crc_errors"] + c["length_errors"] + c["decode_errors"]
    fault_report(
        "1% corrupt bytes (NIRSB, 4 ch × 2 λ @ 100 Hz)",
        1,
        int(alive and clean),
        lost,
        f"{emu.samples_sent} frames sent, {c['frames_ok']} intact accepted, {bad} "
        f"rejected by CRC/length, {c['lost_frames']} reported lost",
    )
    assert alive and clean and lost == 0
    assert bad > 0 and c["lost_frames"] > 0 and status["state"] == "streaming"
    seqs = sorted(stream.raw)
    assert seqs == list(range(len(seqs)))  # rejected frames leave no hole in seq


def watch_written(emu: Emulator) -> list[int]:
    """``[n]``: the samples wholly written to the pty so far (updated when its queue
    empties; frozen while the emulator stalls, since nothing is flushed then)."""
    pty, written = emu.transport.pty, [0]
    flush = pty.flush

    def counted() -> None:
        flush()
        if not pty.pending:
            written[0] = emu.samples_sent

    pty.flush = counted
    return written


def test_stalled_device_10_s(tmp_path, fault_report):
    rate, stall_s = 20.0, 10.0
    emu = Emulator(n_channels=2, rate_hz=rate)
    proc = emulated(tmp_path, emu)
    stream = collect(proc)
    try:
        stream.until(lambda: len(stream.raw) >= 10, what="samples before the stall")
        last = max(stream.raw)
        offset = device_k(emu, stream.raw[last]) - last  # device sample k is seq k - offset
        written = watch_written(emu)
        stall_until = time.monotonic() + stall_s
        emu.stall(stall_s)
        stream.until(
            # the stall has begun (no write until it ends: ``written`` is frozen), a sample
            # is held back, and every sample written before it has come out
            lambda: (
                emu.transport.stalled_until > time.monotonic()
                and emu.transport.pty.pending
                and max(stream.raw) + offset >= written[0] - 1
            ),
            5,
            "every sample written before the stall",
        )
        n_stall = len(stream.raw)
        states, replies, rates = set(), [], []
        while time.monotonic() < stall_until - 0.5:  # during the stall
            t0 = time.monotonic()
            st = proc.control().status()
            replies.append(time.monotonic() - t0)
            states.add(st["state"])
            rates.append(st["rate_hz"])
            stream.pump(0.5)
        during = len(stream.raw) - n_stall
        stream.until(
            lambda: len(stream.raw) >= n_stall + rate * stall_s,
            30,  # generous: a loaded machine
            "the stalled samples after the stall",
        )
        status, lost, clean, alive = device_outcome(stream, proc, emu)
    finally:
        stop_all(stream, proc, emu)
    fault_report(
        "stalled device (no bytes for 10 s)",
        1,
        int(alive and clean),
        lost,
        f"state during stall {sorted(states)}, measured rate down to "
        f"{min(rates):.1f} Hz, status reply max "
        f"{max(replies) * 1e3:.1f} ms, {during} samples during, "
        f"{emu.samples_sent} produced / {len(stream.raw)} published after",
    )
    assert alive and clean and lost == 0 and during == 0
    assert states <= {"streaming", "disconnected"} and max(replies) < 0.5
    assert status["state"] == "streaming" and status["counters"]["lost_frames"] == 0
    # nothing invented, nothing dropped: every sample the device made came out once
    assert len(stream.raw) >= emu.samples_sent - 2 * rate * 0.1 - 2


@pytest.mark.parametrize("device,driver", [("heg", "nirsb"), ("nirsb", "heg")])
def test_wrong_protocol(tmp_path, fault_report, device, driver):
    link = str(tmp_path / "probe")
    emu = (
        HegEmulator(rate_hz=50.0, link=link, autostart=True)
        if device == "heg"
        else Emulator(n_channels=2, rate_hz=50.0, link=link, autostart=True)
    )
    extra = "[optics]\nwavelengths_nm = [660, 880]\n" if driver == "heg" else ""
    proc = emulated(tmp_path, emu, driver, extra, wait=False)
    try:

        def flagged():
            try:
                st = proc.control().status()
            except NirsdError:  # not bound yet
                return None
            return st if "without one valid" in (st["last_error"] or "") else None

        t0 = time.monotonic()
        st0 = wait_for(flagged, 20, what="a status naming the wrong protocol")
        flagged_s = time.monotonic() - t0
        t1 = time.monotonic()  # and it stays so: no sample ever comes out
        st = wait_for(lambda: time.monotonic() - t1 > 1.0 and proc.control().status(), 5)
        alive = proc.proc.poll() is None
        info = proc.control().info()
    finally:
        proc.stop()
        emu.stop()
    c = st["counters"]
    fault_report(
        f"{device} device into the {driver} driver",
        1,
        int(alive and st["samples"] == 0),
        0,
        f"state {st['state']!r} and last_error set after {flagged_s:.1f} s; samples "
        f"{st['samples']}, garbage bytes {c['garbage_bytes']}, lines skipped "
        f"{c['lines_skipped']}",
    )
    assert alive and st["samples"] == 0 and info["seq"] == 0 and c["frames_ok"] == 0
    assert st["state"] == "connecting" and "without one valid" in st["last_error"]
    assert st0["driver"] == driver
    if driver == "heg":  # text lines are skipped as they come; nirsb waits for 0x00
        assert c["garbage_bytes"] + c["lines_skipped"] > 0
    assert "Traceback" not in proc.log() and "no_valid_frames" in proc.log()


# ---------------------------------------------------------------------- subscribers


@pytest.mark.timing
def test_slow_subscriber_and_100_subscribers(tmp_path, fault_report):
    n_subs, seconds = 100, 8.0
    proc = DaemonProcess(tmp_path, simulated_config(channels=16, rate_hz=50.0)).start()
    ctx = zmq.Context.instance()
    socks: list[zmq.Socket] = []
    try:
        slow = ctx.socket(zmq.SUB)  # connects, subscribes to everything, never reads
        slow.setsockopt(zmq.LINGER, 0)
        slow.setsockopt(zmq.RCVHWM, 10)
        slow.setsockopt(zmq.SUBSCRIBE, b"")
        slow.connect(proc.endpoints.data)
        socks.append(slow)
        rss0 = rss_kb(proc.proc.pid)
        poller = zmq.Poller()
        for _ in range(n_subs):
            s = ctx.socket(zmq.SUB)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SUBSCRIBE, b"hb")
            s.connect(proc.endpoints.data)
            poller.register(s, zmq.POLLIN)
            socks.append(s)
        seqs: dict[zmq.Socket, list[int]] = {s: [] for s in socks[1:]}
        latency: list[float] = []
        end = None
        while end is None or time.monotonic() < end:
            for s, _ in poller.poll(100):
                while True:
                    try:
                        frames = s.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    now = time.time()
                    h = wire.unpack(frames[1])
                    seqs[s].extend(range(h["seq"], h["seq"] + h["n"]))
                    latency.append(now - h["t"][-1])
            if end is None and all(seqs.values()):
                end = time.monotonic() + seconds  # every subscriber is connected
        rss1 = rss_kb(proc.proc.pid)
        st = proc.control().status()
        alive = proc.proc.poll() is None
    finally:
        for s in socks:
            s.close(linger=0)
        proc.stop()
    holes = sum(v[-1] - v[0] + 1 - len(v) for v in seqs.values())
    contiguous = all(v == list(range(v[0], v[-1] + 1)) for v in seqs.values())
    n = min(len(v) for v in seqs.values())
    fault_report(
        f"slow subscriber + {n_subs} subscribers (16 ch @ 50 Hz)",
        1,
        int(alive and contiguous),
        holes,
        f"≥{n} samples each; latency p50 {pct(latency, 50):.2f} ms, p99 "
        f"{pct(latency, 99):.2f} ms, max {pct(latency, 100):.1f} ms; daemon RSS "
        f"{rss0 / 1024:.1f} → {rss1 / 1024:.1f} MB",
    )
    assert alive and contiguous and holes == 0 and n >= seconds * 50 * 0.9
    assert pct(latency, 99) < 200.0  # a stall bound (the figure is in the table)
    assert rss1 - rss0 < 30 * 1024 and st["state"] == "streaming"


def test_stalled_subscriber_costs_bounded_memory(tmp_path, fault_report):
    """A subscriber that stops reading at 256 ch × 2 λ @ 200 Hz (about 2 MB/s of
    messages): the daemon queues a bounded number of messages for it, then drops."""
    extra = "[buffer]\nseconds = 1.0\n"  # the ring fills at once: RSS is flat without it
    proc = DaemonProcess(tmp_path, simulated_config(256, 200.0, extra=extra)).start()
    ctx = zmq.Context.instance()
    slow = ctx.socket(zmq.SUB)
    slow.setsockopt(zmq.LINGER, 0)
    slow.setsockopt(zmq.RCVHWM, 1)
    slow.setsockopt(zmq.SUBSCRIBE, b"")
    stream = collect(proc, ("raw",))
    try:
        stream.until(lambda: len(stream.t) >= 400, what="2 s of samples")
        slow.connect(proc.endpoints.data)
        n0 = len(stream.t)  # its queues (about 1,000 messages) fill in 3 s of samples
        stream.until(lambda: len(stream.t) >= n0 + 600, 30, "3 s of samples after it joined")
        rss0, t0 = rss_kb(proc.proc.pid), time.monotonic()
        while time.monotonic() - t0 < 8.0:  # 8 s = about 16 MB it never reads
            stream.pump(0.2)
        rss1 = rss_kb(proc.proc.pid)
        lost = sum(1 for s in range(min(stream.t), max(stream.t)) if s not in stream.t)
        alive = proc.proc.poll() is None
    finally:
        slow.close(linger=0)
        stream.close()
        proc.stop()
    growth_mb = (rss1 - rss0) / 1024
    fault_report(
        "stalled subscriber at 256 ch × 2 λ @ 200 Hz for 8 s",
        1,
        int(alive),
        lost,
        f"daemon RSS {rss0 / 1024:.1f} → {rss1 / 1024:.1f} MB "
        f"({growth_mb:+.1f} MB); a reading subscriber lost nothing",
    )
    assert alive and lost == 0
    assert growth_mb < 12.0  # 100,000 queued messages: +30 MB in 8 s, and growing


@pytest.mark.timing
def test_markers_1000_per_second_for_10_s(tmp_path, fault_report):
    rate_s, seconds = 1000, 10.0
    proc = DaemonProcess(tmp_path, simulated_config(rate_hz=50.0)).start()
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(proc.endpoints.control)
    stream = collect(proc, ("raw", "marker"))
    sent, ok, reply_lat, sent_at = 0, 0, [], []
    try:
        stream.until(lambda: len(stream.raw) >= 5, what="samples")
        request = wire.pack({"cmd": "mark", "label": "tick", "action": "instant"})
        t0 = time.monotonic()

        def drain(wait_ms: int) -> None:
            nonlocal ok
            while dealer.poll(wait_ms):
                ok += bool(wire.unpack(dealer.recv_multipart()[-1]).get("ok"))
                reply_lat.append(time.monotonic() - sent_at[len(reply_lat)])
                wait_ms = 0

        total = int(seconds * rate_s)
        while sent < total:
            elapsed = time.monotonic() - t0
            while sent < min(int(elapsed * rate_s) + 1, total):
                dealer.send_multipart([b"", request])
                sent_at.append(time.monotonic())
                sent += 1
            drain(0)
            stream.pump(0.001)
        deadline = time.monotonic() + 15
        while len(reply_lat) < sent and time.monotonic() < deadline:
            drain(100)
        stream.until(lambda: len(stream.of("marker")) >= sent, 10, "every marker published")
        status, lost, alive = daemon_outcome(stream, proc)
    finally:
        dealer.close(linger=0)
        stream.close()
        proc.stop()
    markers, latency = len(stream.of("marker")), stream.latency["raw"]
    fault_report(
        "1,000 markers/s for 10 s (DEALER)",
        sent,
        ok,
        lost,
        f"{ok}/{sent} acknowledged, {markers} published; reply p50 "
        f"{pct(reply_lat, 50):.2f} ms, p99 {pct(reply_lat, 99):.2f} ms; sample "
        f"latency p99 {pct(latency, 99):.1f} ms",
    )
    assert alive and sent == rate_s * seconds and ok == sent and markers == sent
    assert elapsed < seconds + 0.5  # the requests really went at 1,000 per second
    assert lost == 0 and status["state"] == "streaming"
    # a stall bound, not a speed target (the figure is in the table; bench/ measures
    # latency): with another test file running beside it on 2 cores, p99 reached 157
    # and 240 ms in two of four runs, with nothing lost
    assert pct(latency, 99) < 500.0


# ---------------------------------------------------------------------- crashes


def _record(daemon: DaemonProcess, path: Path, *args: str, preexec=None) -> subprocess.Popen:
    return start_recorder(daemon, path, *args, preexec=preexec, cwd=path.parent)


def _journal_has(path: Path, kind: str) -> bool:
    try:
        with open(f"{path}.journal.jsonl") as fh:
            return any(json.loads(line).get("kind") == kind for line in fh if line.endswith("\n"))
    except (OSError, ValueError):
        return False


def _snirf_seqs(path: Path, recovered: str = "") -> np.ndarray:
    import h5py
    import snirf

    result = snirf.validateSnirf(str(path))
    assert result.is_valid(), (result.errors, recovered)
    with h5py.File(path, "r") as f:
        return f["nirs/aux1/dataTimeSeries"][:, 0].astype(int)


@needs_snirf
def test_sigkill_recorder_three_times(tmp_path, fault_report, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the snirf validator writes pysnirf2.log here
    rate, kills = 20.0, 3
    proc = DaemonProcess(tmp_path, simulated_config(rate_hz=rate)).start()
    stream = collect(proc, ("raw",))
    survived, lost, behind, repaired = 0, 0, [], []
    try:
        for i in range(kills):
            path = tmp_path / f"killed{i}.snirf"
            rec = _record(proc, path)
            try:
                wait_for(lambda: _journal_has(path, "run"), 20, what="recorder writing")
                start = max(stream.raw, default=0)
                stream.until(
                    lambda: max(stream.raw) >= start + rate * (1.0 + i), 15, "seconds of recording"
                )
                rec.kill()
                rec.wait(10)
                killed_at = max(stream.raw)
            finally:
                if rec.poll() is None:
                    rec.kill()
                    rec.wait()
            out = proc.cli("record", "--recover", str(path))
            seq = _snirf_seqs(path, out.stdout)
            repaired += json.loads(out.stdout.strip().splitlines()[-1]).get("tags_repaired", [])
            behind.append((killed_at - seq[-1]) / rate)
            lost += int(seq[-1] + 1 - len(seq))  # holes inside the file
            survived += out.returncode == 0 and seq[0] == 0 and behind[-1] <= 1.0 + 1 / rate
        lost += stream.lost()
    finally:
        stream.close()
        proc.stop()
    fault_report(
        "SIGKILL of the recorder, then --recover",
        kills,
        survived,
        lost,
        f"file ends ≤ {max(behind):.2f} s before the kill; snirf-valid each time; "
        f"{len(repaired)} unreadable tags written again",
    )
    assert survived == kills and lost == 0


class BackfilledClient(threading.Thread):
    """``Subscriber.backfilled`` in its own thread, keeping (stream, seq, header) rows."""

    def __init__(self, daemon: DaemonProcess) -> None:
        super().__init__(daemon=True)
        self.daemon_proc = daemon
        self.rows: dict[str, set[int]] = {}
        self.restarts: list[dict] = []
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.daemon_proc.subscriber(("raw", "status")) as sub:
                for msg in sub.backfilled(since=0):
                    if msg.topic == "raw":
                        if "restart" in msg.header:
                            self.restarts.append(msg.header["restart"])
                        got = self.rows.setdefault(msg.header["stream"], set())
                        got.update(range(msg.seq, msg.seq + msg.n))
                    if self.stop_flag.is_set():
                        return
        except BaseException as err:
            self.error = err


@needs_snirf
def test_sigkill_daemon_restart_clients_resume(tmp_path, fault_report, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rate = 20.0
    config = simulated_config(rate_hz=rate)
    first = DaemonProcess(tmp_path / "a", config).start()
    old_stream = first.control().info()["stream"]
    client = BackfilledClient(first)
    client.start()
    path = tmp_path / "rec.snirf"
    rec = _record(first, path)
    second = DaemonProcess(tmp_path / "a", config)  # same runtime dir: same endpoints
    try:
        wait_for(lambda: _journal_has(path, "run"), 20, what="recorder writing")
        wait_for(lambda: len(client.rows.get(old_stream, ())) >= rate * 2, 15)
        first.proc.kill()  # SIGKILL mid-stream
        first.proc.wait(10)
        seen_old = max(client.rows[old_stream])
        t_kill = time.monotonic()
        second.start(timeout=20)  # systemd's Restart=on-failure
        new_stream = second.control().info()["stream"]
        wait_for(
            lambda: len(client.rows.get(new_stream, ())) >= rate * 2,
            15,
            what="the client resumed on the new stream",
        )
        resumed_s = time.monotonic() - t_kill
        out, err = rec.communicate(timeout=20)  # the recorder ends its file cleanly
        head = second.control().info()["seq"]
        wait_for(lambda: max(client.rows[new_stream]) >= head - 1, 10)
        path2 = tmp_path / "rec2.snirf"  # and a new recording resumes
        rec2 = _record(second, path2, "--duration", "1.5")
        out2, err2 = rec2.communicate(timeout=30)
    finally:
        client.stop_flag.set()
        for p in (rec, locals().get("rec2")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        second.stop()
        first.stop()
    client.join(5)
    assert client.error is None, client.error
    assert new_stream != old_stream
    old = sorted(client.rows[old_stream])
    new = sorted(client.rows[new_stream])
    holes = (old[-1] + 1 - len(old)) + (new[-1] + 1 - len(new))
    summary = json.loads(out.strip().splitlines()[-1])
    seq = _snirf_seqs(path)
    seq2 = _snirf_seqs(path2)
    gap = client.restarts[0] if client.restarts else {}
    fault_report(
        "SIGKILL of the daemon, restart on the same endpoints",
        1,
        int(rec.returncode == 0 and rec2.returncode == 0 and holes == 0),
        holes + int(seq[-1] + 1 - len(seq)) + int(seq2[-1] + 1 - len(seq2)),
        f"client resumed {resumed_s:.2f} s after the kill, gap reported "
        f"{gap.get('gap_s', float('nan')):.2f} s; recorder: "
        f"{summary['reason']!r}, {len(seq)} rows; new recording {len(seq2)} rows",
    )
    assert rec.returncode == 0 and "restarted" in summary["reason"]
    assert old[0] == 0 and new[0] == 0 and holes == 0
    assert seq[0] == 0 and seq[-1] >= seen_old - rate * 1.0 - 1
    assert seq2[0] == 0 and rec2.returncode == 0
    assert gap and gap["stream"] == old_stream and gap["end_seq"] == old[-1] + 1
    assert 0 < gap["gap_s"] < resumed_s + 1.0


@needs_snirf
def test_recorder_on_a_full_filesystem(tmp_path, fault_report, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = tmp_path / "small"
    small.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], capture_output=True
        ).returncode
        == 0
    )
    limit = 2_000_000

    def small_files() -> None:
        if not mounted:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    path = small / "full.snirf"
    try:
        with DaemonProcess(tmp_path, simulated_config(channels=64, rate_hz=100.0)) as proc:
            rec = _record(proc, path, "--backfill", "0", "--duration", "40", preexec=small_files)
            out, err = finish(rec, 45)
            alive = proc.proc.poll() is None
        summary = json.loads(out.strip().splitlines()[-1])
        seq = _snirf_seqs(path)
        size = path.stat().st_size
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(small)], capture_output=True)
    assert len(seq), (rec.returncode, out, err)
    holes = int(seq[-1] - seq[0] + 1 - len(seq))  # recorded from the first live sample
    fault_report(
        f"recorder on a full filesystem ({'2 MB tmpfs' if mounted else 'RLIMIT_FSIZE'})",
        1,
        int(rec.returncode == 74 and alive),
        holes,
        f"exit {rec.returncode}, {summary['samples']} samples kept in a valid "
        f"{size / 1e6:.2f} MB file",
    )
    assert rec.returncode == 74 and "disk full" in err and "Traceback" not in err
    assert summary["reason"] == "disk full" and len(seq) == summary["samples"] > 100
    assert holes == 0 and alive


# ---------------------------------------------------------------------- bad input

BAD_CONFIGS = [
    ('[device]\ndriver = "simulated"\nchanels = 8\n', "device.chanels"),
    ('[device]\ndriver = "simulated"\nchannels = 0\n', "device.channels"),
    ('[device]\ndriver = "simulated"\nchannels = "eight"\n', "device.channels"),
    ('[device]\ndriver = "simulated"\nrate_hz = -10\n', "device.rate_hz"),
    ('[device]\ndriver = "simulated"\nreconnect_s = 0\n', "device.reconnect_s"),
    ('[device]\ndriver = "simulated"\noptions = 3\n', "device.options"),
    ("[device]\ndriver = 5\n", "device.driver"),
    ('[device]\ndriver = "heg"\n', "device.port"),
    ('[optics]\ndistance_mm = "far"\n', "optics.distance_mm"),
    ('[optics]\nwavelengths_nm = "760,850"\n', "optics.wavelengths_nm"),
    ("[optics]\nage_years = -1\n", "optics.age_years"),
    ("[optics]\nsaturation_level = 0\n", "optics.saturation_level"),
    ("[baseline]\nseconds = 0\n", "baseline.seconds"),
    ("[buffer]\nmax_mb = -1\n", "buffer.max_mb"),
    ("[markers]\nlabels = []\n", "markers.labels"),
    ('[markers]\nallow_overlap = "yes"\n', "markers.allow_overlap"),
    ('[status]\ninterval_s = "often"\n', "status.interval_s"),
    ('[endpoints]\ncontrol = "http://x"\n', "endpoints.control"),
    ("[[channel]]\nindex = 0\nsource_pos_mm = [1]\n", "channel[0].source_pos_mm"),
    ("device = 3\n", "device"),
]


def test_20_malformed_configs(tmp_path, fault_report):
    runs = []
    for i, (text, key) in enumerate(BAD_CONFIGS):
        path = tmp_path / f"bad{i}.toml"
        path.write_text(text)
        env = {**os.environ, "NIRSD_RUNTIME_DIR": str(tmp_path / f"run{i}")}
        for cmd in (["check-config", str(path)], ["run", "--config", str(path)]):
            runs.append(
                (
                    key,
                    subprocess.Popen(
                        [sys.executable, "-m", "nirsd.cli", *cmd],
                        env=env,
                        text=True,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                    ),
                )
            )
    results = []
    try:
        for key, p in runs:
            out, err = p.communicate(timeout=60)
            lines = err.strip().splitlines()
            results.append((key, p.returncode, lines))
    finally:
        for _, p in runs:
            if p.poll() is None:
                p.kill()
                p.wait()
    good = [
        r
        for r in results
        if r[1] == 78 and len(r[2]) == 1 and r[0] in r[2][0] and "Traceback" not in r[2][0]
    ]
    fault_report(
        "malformed configs (check-config and run)",
        len(BAD_CONFIGS),
        len(good) // 2,
        0,
        f"{len(good)}/{len(results)} runs: exit 78, one line naming the key",
    )
    assert len(BAD_CONFIGS) == 20
    assert [r for r in results if r not in good] == []


BAD_REQUESTS = [
    [b""],
    [b"\xc1"],
    [b"\x92\x01\x02"],
    [wire.pack("info")],
    [wire.pack(3.5)],
    [wire.pack({})],
    [wire.pack({"cmd": 7})],
    [wire.pack({"cmd": "reboot"})],
    [wire.pack({"cmd": "info", "junk": "x" * 70_000})],
    [wire.pack({"cmd": "info"}), b"second frame"],
    [wire.pack({"cmd": "history", "since": "zero"})],
    [wire.pack({"cmd": "history"})],
    [wire.pack({"cmd": "history", "seconds": -5})],
    [wire.pack({"cmd": "history", "since": 0, "max_samples": "all"})],
    [wire.pack({"cmd": "mark"})],
    [wire.pack({"cmd": "mark", "label": ["rest"]})],
    [wire.pack({"cmd": "mark", "label": "rest", "action": "sideways"})],
    [wire.pack({"cmd": "mark", "label": "rest", "t": "now"})],
    [wire.pack({"cmd": "protocol", "action": "start", "name": "no-such-protocol"})],
    [wire.pack({"cmd": "protocol", "action": 1})],
]


def test_20_malformed_control_requests(tmp_path, fault_report):
    proc = DaemonProcess(tmp_path, simulated_config(rate_hz=50.0)).start()
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(proc.endpoints.control)
    stream = collect(proc)
    replies = []
    try:
        stream.until(lambda: len(stream.raw) >= 5, what="samples")
        rejected0 = proc.control().status()["counters"]["control_rejected"]
        for frames in BAD_REQUESTS:
            dealer.send_multipart([b"", *frames])
            assert dealer.poll(5000), f"no reply to {frames!r:.80}"
            replies.append(wire.unpack(dealer.recv_multipart()[-1]))
            stream.pump(0.01)
        after = max(stream.raw) + 10  # and the stream goes on
        stream.until(lambda: max(stream.raw) >= after, what="samples after the bad requests")
        status, lost, alive = daemon_outcome(stream, proc)
    finally:
        dealer.close(linger=0)
        stream.close()
        proc.stop()
    clear = [
        r
        for r in replies
        if r.get("ok") is False
        and isinstance(r.get("error"), str)
        and r["error"]
        and "\n" not in r["error"]
    ]
    rejected = status["counters"]["control_rejected"] - rejected0
    fault_report(
        "malformed control requests",
        len(BAD_REQUESTS),
        len(clear),
        lost,
        f"{len(clear)} one-line error replies, control_rejected +{rejected}, "
        f"state {status['state']!r}",
    )
    assert len(BAD_REQUESTS) == 20 and len(clear) == 20, [r for r in replies if r not in clear]
    assert alive and lost == 0 and status["state"] == "streaming"
    assert sorted(stream.raw) == list(range(len(stream.raw)))
