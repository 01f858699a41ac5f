"""What one frame costs nirsd and the transport floor, in counts that do not depend on
how busy the machine is: Python + C calls and CPU instructions per frame.

A device process writes NIRSB frames on a pty in lock-step (the next frame only after
the previous one came out of the ZeroMQ socket, then a short pause so the reader is
back asleep in ``poll``: the cold path of a 10-100 Hz probe).  The reader under test
runs in its own process:

- ``nirsd``: the daemon's real ``Acquisition`` loop (driver nirsb, a subscriber on
  ``hb``, status every hour so that only the frame path is measured);
- ``floor``: the minimal relay of ``common.floor_relay`` (``poll`` → ``os.read`` →
  split on 0x00 → one PUB ``send`` per frame).

Two measures per frame:

- **calls**: ``sys.setprofile`` events (Python calls and C calls, numpy's included)
  from the return of the ``poll`` that woke the reader to the return of the last
  ``send`` of that turn (``to send``), and to the next ``poll`` (``turn``: what the loop
  does after sending, such as history and markers, too).  Medians over the frames.
- **instructions**: ``valgrind --tool=callgrind`` of the whole reader process, run
  twice with a different number of measured frames; the difference divided by the
  difference in frames (start-up and warm-up cancel).  Repeatable to a few hundred
  instructions; needs ``valgrind`` (``apt-get install valgrind``), else skipped.

    python bench/frame_cost.py                       # the four reference loads
    python bench/frame_cost.py --loads 64x2@100 --top 25   # where the calls go
    python bench/frame_cost.py --no-callgrind        # calls only (seconds)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_LOADS, RESULTS, Load, PtyDevice, floor_relay, parse_load  # noqa: E402

SCRIPT = str(Path(__file__).resolve())
GAP_S = 0.003  # after each frame's message: the reader goes back to sleep in poll
TARGETS = ("nirsd", "floor")


# --------------------------------------------------------------------------- the device


def role_device(a: argparse.Namespace) -> None:
    """Write ``a.frames`` frames in lock-step with their messages on ``a.data``."""
    import zmq

    load = parse_load(a.load)
    dev = PtyDevice(load, lockstep=True)
    print(dev.port, flush=True)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, a.topic.encode())
    sub.connect(a.data)
    dev.wait_streaming(timeout_s=60)  # the reader's ?b (the emulator answers ? with INFO)
    got = expected = 0 if a.topic else -1  # the floor relays the INFO frame too
    for k in range(a.frames):
        dev.step()
        expected = k + 1 if a.topic else k + 2
        while got < expected:
            # the first frames may precede the subscription: do not wait long for those
            if not sub.poll(30_000 if k >= 20 else 300):
                got = expected  # lost before the subscription: never coming
                break
            sub.recv_multipart()
            got += 1
        time.sleep(GAP_S)
    os.kill(os.getppid(), signal.SIGTERM)
    deadline = time.monotonic() + 10
    while a.topic and dev.streaming and time.monotonic() < deadline:
        time.sleep(0.01)  # nirsd writes its stop command before it closes the port
    sub.close()
    ctx.term()
    dev.close()


# --------------------------------------------------------------------------- the reader


class CallCounter:
    """A ``sys.setprofile`` hook: calls per loop turn, from ``poll`` to the last ``send``."""

    def __init__(self, top: bool) -> None:
        self.n = 0
        self.start: int | None = None
        self.last_send: int | None = None
        self.sends = 0
        self.turns: list[tuple[int, int, int]] = []  # (to last send, whole turn, sends)
        self.top = top
        self.names: list[Counter[str]] = []  # per turn, when ``top``
        self._turn_names: Counter[str] = Counter()
        import zmq

        self._send = zmq.Socket.send.__code__
        self.depth = 0

    def _is_send(self, code: Any) -> bool:
        """pyzmq's Python ``send``, or nirsd's ``Publisher._send`` or the lean path's
        ``lean_messages.publish`` (C-level sends, which the profiler does not see)."""
        return code is self._send or (
            (code.co_name == "_send" and code.co_filename.endswith("publisher.py"))
            or (code.co_name == "publish" and code.co_filename.endswith("lean_messages.py"))
        )

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call" or event == "c_call":
            if (
                frame.f_code.co_name if event == "call" else getattr(arg, "__name__", "")
            ) == "poll":
                self._end_turn()
            self.n += 1
            if self.top and self.start is not None:
                if event == "call":
                    code = frame.f_code
                    name = f"{Path(code.co_filename).stem}.{code.co_name}"
                else:
                    mod = (
                        getattr(arg, "__module__", None)
                        or type(getattr(arg, "__self__", None)).__name__
                    )
                    name = f"{mod}.{getattr(arg, '__qualname__', repr(arg))}"
                self._turn_names[name] += 1
            if event == "call" and self._is_send(frame.f_code):
                self.depth += 1
                self.sends += self.depth == 1  # a message (nirsd: three frames in one _send)
        elif event == "return":
            if self._is_send(frame.f_code):
                self.depth -= 1
                self.last_send = self.n
            elif frame.f_code.co_name == "poll":
                self.start = self.n  # a Python poll (zmq.Poller) just returned
        elif event == "c_return" and getattr(arg, "__name__", "") == "poll":
            self.start = self.n  # select.poll / zmq_poll just returned

    def _end_turn(self) -> None:
        if self.start is not None and self.last_send is not None and self.sends:
            self.turns.append((self.last_send - self.start, self.n - self.start, self.sends))
            if self.top:
                self.names.append(self._turn_names)
        self._turn_names = Counter()
        self.start = self.last_send = None
        self.sends = 0


BASELINE_SAMPLES = 100  # the baseline window, in frames: the warm-up covers it


def nirsd_config(port: str, rate_hz: float) -> str:
    return (
        f'[device]\ndriver = "nirsb"\nport = "{port}"\nreconnect_s = 0.1\n'
        f"[baseline]\nseconds = {BASELINE_SAMPLES / rate_hz!r}\n[status]\ninterval_s = 3600\n"
    )


def role_reader(a: argparse.Namespace) -> None:
    """Run nirsd's loop or the floor relay on the device's pty until it signals."""
    work = Path(tempfile.mkdtemp(prefix="nirsdcost"))
    os.environ["NIRSD_RUNTIME_DIR"] = str(work)
    endpoint = f"ipc://{work / 'data'}"
    topic = "hb" if a.target == "nirsd" else ""
    args = ["device", "--load", a.load, "--frames", str(a.frames), "--data", endpoint]
    dev = subprocess.Popen(
        [sys.executable, SCRIPT, *args, "--topic", topic], stdout=subprocess.PIPE, text=True
    )
    port = dev.stdout.readline().strip()
    stop = {"now": False}
    counter = CallCounter(a.top > 0) if a.profile else None
    if a.target == "nirsd":
        from nirsd.daemon import config, logs
        from nirsd.daemon.acquisition import Acquisition

        (work / "nirsd.toml").write_text(nirsd_config(port, parse_load(a.load).rate_hz))
        cfg = config.load(work / "nirsd.toml")
        logs.configure("warning", json=True)
        acq = Acquisition(cfg)

        def on_term(*_: object) -> None:
            acq.stop_requested = True

        signal.signal(signal.SIGTERM, on_term)
        gc.freeze()  # as the service does before its loop
        sys.setprofile(counter)
        try:
            acq.run()
        finally:
            sys.setprofile(None)
            acq.close()
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        sys.setprofile(counter)
        try:
            floor_relay(port, endpoint, lambda: not stop["now"])
        finally:
            sys.setprofile(None)
    dev.wait(30)
    shutil.rmtree(work, ignore_errors=True)
    if counter is not None:
        turns = counter.turns[-a.measure :]
        out = {
            "turns": len(turns),
            "to_send": sorted(t[0] for t in turns)[len(turns) // 2] if turns else None,
            "turn": sorted(t[1] for t in turns)[len(turns) // 2] if turns else None,
            "sends": sorted(t[2] for t in turns)[len(turns) // 2] if turns else None,
            "top": [
                (name, round(n / max(1, len(turns)), 2))
                for name, n in sum(counter.names[-a.measure :], Counter()).most_common(a.top)
            ],
        }
        print("RESULT " + json.dumps(out), flush=True)


# --------------------------------------------------------------------------- driver


def _reader_cmd(target: str, load: Load, frames: int, measure: int, extra: list[str]) -> list:
    return [
        sys.executable,
        SCRIPT,
        "reader",
        "--target",
        target,
        "--load",
        load.label,
        "--frames",
        str(frames),
        "--measure",
        str(measure),
        *extra,
    ]


def _env() -> dict[str, str]:
    """The reader's environment: one BLAS thread, as ``nirsd run`` sets it (the floor
    does not use numpy; without this its idle BLAS threads add noise)."""
    from nirsd.daemon.cmd_run import BLAS_THREADS

    return {**os.environ, **BLAS_THREADS, "PYTHONHASHSEED": "0"}  # the same dict layouts each run


def count_calls(target: str, load: Load, warmup: int, frames: int, top: int) -> dict:
    cmd = _reader_cmd(target, load, warmup + frames, frames, ["--profile", "--top", str(top)])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env())
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{target} {load.label}: {out.stderr[-1500:]}")


def _callgrind_ir(cmd: list[str], tmp: Path) -> int:
    path = tmp / f"cg.{time.monotonic_ns()}"
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={path}", "--dump-instr=no"]
    out = subprocess.run(vg + cmd, capture_output=True, text=True, timeout=1800, env=_env())
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"callgrind failed: {out.stderr[-1500:]}")


def count_instructions(target: str, load: Load, warmup: int, frames: int) -> float:
    """Instructions per frame: two runs that differ only in their number of frames."""
    with tempfile.TemporaryDirectory(prefix="nirsdcg") as tmp:
        short = _callgrind_ir(_reader_cmd(target, load, warmup, 0, []), Path(tmp))
        long = _callgrind_ir(_reader_cmd(target, load, warmup + frames, 0, []), Path(tmp))
    return (long - short) / frames


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| load | nirsd calls to send | floor calls to send | ratio | nirsd calls per turn "
        "| floor calls per turn | ratio | messages per frame (nirsd / floor) "
        "| nirsd instructions | floor instructions | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        d, f = r.get("nirsd", {}), r.get("floor", {})
        di, fi = d.get("instructions"), f.get("instructions")
        d, f = (
            {"to_send": None, "turn": None, "sends": None, **d},
            {"to_send": None, "turn": None, "sends": None, **f},
        )
        lines.append(
            f"| {r['load']} | {d['to_send']} | {f['to_send']} "
            f"| {ratio(d['to_send'], f['to_send'])} "
            f"| {d['turn']} | {f['turn']} | {ratio(d['turn'], f['turn'])} "
            f"| {d['sends']} / {f['sends']} "
            f"| {'-' if di is None else f'{di:,.0f}'} | {'-' if fi is None else f'{fi:,.0f}'} "
            f"| {ratio(di, fi)} |"
        )
    return "\n".join(lines)


def run(
    loads: list[Load],
    frames: int = 400,
    warmup: int = 150,
    callgrind: bool = True,
    top: int = 0,
    targets: tuple[str, ...] = TARGETS,
    log=print,
) -> list[dict[str, Any]]:
    """Calls (and, with valgrind, instructions) per frame for each target at each load."""
    use_cg = callgrind and shutil.which("valgrind") is not None
    if callgrind and not use_cg:
        log("  valgrind not found: instruction counts skipped", file=sys.stderr)
    rows = []
    for load in loads:
        row: dict[str, Any] = {"load": load.label}
        for target in targets:
            log(f"  frame cost {load.label} {target} ...", file=sys.stderr)
            try:
                res = count_calls(target, load, warmup, frames, top)
                if use_cg:
                    res["instructions"] = count_instructions(target, load, warmup, frames)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                log(f"  {target} {load.label}: {err}", file=sys.stderr)
                res = {}
            row[target] = res
            if top and res:
                print(f"\n{target} {load.label}: calls per frame, most first")
                for name, n in res["top"]:
                    print(f"  {n:8.2f}  {name}")
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loads", nargs="+", type=parse_load, default=None)
    p.add_argument("--frames", type=int, default=400, help="measured frames per run")
    p.add_argument(
        "--warmup",
        type=int,
        default=150,
        help=f"frames before (≥ the {BASELINE_SAMPLES} of the baseline)",
    )
    p.add_argument("--no-callgrind", action="store_true", help="skip instruction counts")
    p.add_argument("--top", type=int, default=0, help="print the N most called per frame")
    p.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    p.add_argument("--json", type=Path, default=RESULTS / "frame_cost.json")
    p.add_argument(
        "--readme", action="store_true", help="write the table into README.md (Performance)"
    )
    a = p.parse_args(argv)
    loads = a.loads or DEFAULT_LOADS
    rows = run(loads, a.frames, a.warmup, not a.no_callgrind, a.top, tuple(a.targets), print)
    print(table(rows))
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(rows, indent=1))
    print(f"saved {a.json}")
    if a.readme:
        import readme
        from common import machine

        readme.replace_block("frame-cost", readme.provenance(machine()) + "\n\n" + table(rows))
        print(f"updated {readme.README}")
    return 0


def _roles(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["device", "reader"])
    p.add_argument("--load", required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--data")
    p.add_argument("--topic", default="")
    p.add_argument("--target", choices=TARGETS)
    p.add_argument("--measure", type=int, default=0)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--top", type=int, default=0)
    a = p.parse_args(argv)
    (role_device if a.role == "device" else role_reader)(a)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("device", "reader"):
        _roles(sys.argv[1:])
    else:
        sys.exit(main())
