"""What a newcomer meets on the command line: missing extras, no daemon, markers, ports.

Every command runs as a real subprocess; timings are bounded generously (a 2-core
machine shared with other work), yet far below the waits they replace.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time

import pytest
from stream_support import joined, recv_topic

from nirsd.cli.testing import DaemonProcess, device_config, simulated_config, wait_for
from nirsd.core.errors import NirsdError


def _nirsd(args: list[str], env: dict[str, str], timeout: float = 60.0):
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "nirsd.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out, time.monotonic() - t0


def _blocked(modules: list[str], args: list[str], env: dict[str, str]):
    """``nirsd ARGS`` in an interpreter where ``modules`` cannot be imported (as if the
    extra were not installed: ``sys.modules[name] = None`` makes ``import`` fail)."""
    code = (
        "import sys\n"
        f"for name in {modules!r}:\n"
        "    sys.modules[name] = None\n"
        "from nirsd.cli.main import main\n"
        f"sys.exit(main({args!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("blocked", "args", "extra"),
    [
        (["matplotlib"], ["plot", "s.snirf", "-o", "s.png"], "plot"),  # h5py present
        (["h5py"], ["plot", "s.snirf", "-o", "s.png"], "plot"),
        (["h5py"], ["record", "x.snirf"], "snirf"),
        (["rich"], ["view", "--once"], "view"),
        (["pylsl"], ["lsl"], "lsl"),
        (["aiohttp"], ["console"], "console"),
    ],
    ids=["plot-matplotlib", "plot-h5py", "record", "view", "lsl", "console"],
)
def test_missing_extra_names_the_extra(tmp_path, blocked, args, extra):
    env = {**os.environ, "NIRSD_RUNTIME_DIR": str(tmp_path)}
    out = _blocked(blocked, args, env)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert f"'nirsd[{extra}]'" in out.stderr and blocked[0] in out.stderr
    if extra != "console":  # these go through nirsd.core.optional: the checkout form too
        assert f"-e '.[{extra}]'" in out.stderr


def test_the_all_extra_holds_every_optional_dependency():
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    tools = ("all", "test", "bench", "lint")  # for developers, not features of nirsd
    every = {req for name, reqs in extras.items() if name not in tools for req in reqs}
    assert every <= set(extras["all"]), sorted(every - set(extras["all"]))


@pytest.mark.timing
@pytest.mark.parametrize(
    "args",
    [["status"], ["info"], ["mark", "extension"], ["baseline"], ["record", "x.snirf"]],
    ids=["status", "info", "mark", "baseline", "record"],
)
def test_no_daemon_is_said_at_once_when_the_socket_file_is_missing(tmp_path, args):
    env = {**os.environ, "NIRSD_RUNTIME_DIR": str(tmp_path / "run")}
    out, took = _nirsd([*args, "--timeout", "60"], env, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert f"{tmp_path / 'run' / 'control'} does not exist" in out.stderr
    assert "nirsd run" in out.stderr
    # a wait would last the whole --timeout; what is left is interpreter start-up
    # (about 1 s, several on a loaded machine)
    assert took < 20.0, took


def test_an_existing_socket_file_is_still_waited_for(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "control").write_text("")  # a stale socket file: a daemon may be starting
    env = {**os.environ, "NIRSD_RUNTIME_DIR": str(run)}
    out, took = _nirsd(["status", "--timeout", "1"], env)
    assert out.returncode == 1
    assert "no reply" in out.stderr and "within 1 s" in out.stderr
    assert took >= 0.9


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One daemon for the module: each test leaves no epoch open (the recording test only
    reads, and finds the history it needs already held)."""
    d = DaemonProcess(
        tmp_path_factory.mktemp("messages"), simulated_config(channels=2, rate_hz=20.0)
    )
    d.start()
    try:
        yield d
    finally:
        d.stop()


def _mark(daemon: DaemonProcess, *args: str):
    out = daemon.cli("mark", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), out.stderr


def test_mark_end_without_label_ends_the_open_epoch(daemon):
    ext, err = _mark(daemon, "extension")
    assert ext["ended"] is None and err == ""
    end, err = _mark(daemon, "--end")
    assert end["action"] == "end" and end["label"] == "extension"
    assert end["ended"]["label"] == "extension" and end["ended"]["start_id"] == ext["id"]
    assert end["ended"]["end_seq"] == end["seq"] and end["ended"]["onset_seq"] == ext["seq"]
    assert "ended extension (started by marker" in err
    assert daemon.control().status()["epoch"] is None
    # nothing open: a clear error, not a usage error
    out = daemon.cli("mark", "--end")
    assert out.returncode == 1 and "no open epoch to end" in out.stderr
    # a start still needs a label (usage error, exit 2)
    out = daemon.cli("mark")
    assert out.returncode == 2 and "LABEL" in out.stderr


def test_a_start_says_which_epoch_it_ended(daemon):
    with daemon.subscriber(["marker", "status"]) as sub:
        joined(sub)  # a marker published before the subscription reached the daemon is lost
        ext, _ = _mark(daemon, "extension")
        flex, err = _mark(daemon, "flexion")
        seen = []
        wait_for(
            lambda: seen.append(recv_topic(sub, "marker", 0.2)) or len([m for m in seen if m]) >= 3,
            10,
            what="three marker messages",
        )
    ended = flex["ended"]
    assert ended["label"] == "extension" and ended["start_id"] == ext["id"]
    assert ended["onset_seq"] == ext["seq"] and ended["end_seq"] == flex["seq"]
    assert ended["duration_s"] == pytest.approx((flex["seq"] - ext["seq"]) / 20.0)
    # the id the acks skipped is the daemon's own end marker, now named in the ack
    auto = [m.header for m in seen if m and m.header.get("source") == "auto"]
    assert [a["id"] for a in auto] == [ended["end_id"]] and auto[0]["label"] == "extension"
    assert f"nirsd: ended extension (started by marker {ext['id']}" in err
    _mark(daemon, "--end")  # the module's daemon is left with no open epoch
    assert daemon.control().status()["epoch"] is None


def test_check_config_warns_that_the_port_is_absent_now(tmp_path):
    cfg = tmp_path / "probe.toml"
    cfg.write_text(device_config(str(tmp_path / "ttyACM9")))
    out, _ = _nirsd(["check-config", str(cfg)], dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert ": ok" in out.stdout
    assert f"{tmp_path / 'ttyACM9'} does not exist now" in out.stderr
    present = tmp_path / "ttyACM0"
    present.write_text("")
    cfg.write_text(device_config(str(present)))
    out, _ = _nirsd(["check-config", str(cfg)], dict(os.environ))
    assert out.returncode == 0 and out.stderr == ""


@pytest.mark.parametrize("logs_piped", [False, True], ids=["all-on-terminal", "logs-piped"])
def test_run_says_plainly_on_a_terminal_that_the_port_is_absent(tmp_path, logs_piped):
    port = tmp_path / "ttyACM9"
    d = DaemonProcess(tmp_path, device_config(str(port)))
    master, slave = pty.openpty()
    buf = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            buf.extend(data)

    d._log = open(d.log_path, "ab")
    d.proc = subprocess.Popen(
        d.command(),
        env=d.env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=d._log if logs_piped else slave,  # `nirsd run 2>log`: JSON log lines
    )
    os.close(slave)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        want = f"nirsd: the device port {port} does not exist; waiting for it"
        wait_for(lambda: want in buf.decode(errors="replace"), 20, what="the plain line")

        def state() -> str | None:
            try:
                return d.control().status().get("state")
            except NirsdError:
                return None

        # and it keeps waiting, as a service must
        wait_for(lambda: state() == "disconnected", 20, what="the daemon up, waiting")
        assert d.proc.poll() is None
        if logs_piped:  # the log keeps its JSON record of the same fact
            records = [json.loads(x) for x in d.log().splitlines() if x.startswith("{")]
            assert any(r.get("event") == "device_unavailable" for r in records)
            assert want not in d.log()
    finally:
        d.stop()
        os.close(master)


def _record_summary(daemon: DaemonProcess, path, *args: str) -> dict:
    out = daemon.cli("record", str(path), "--duration", "1", *args, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_record_starts_now_unless_asked_to_backfill(daemon, tmp_path):
    h5py = pytest.importorskip("h5py")
    wait_for(lambda: daemon.control().info()["seq"] >= 60, 20, what="3 s of history")
    head = daemon.control().info()["seq"]
    now = _record_summary(daemon, tmp_path / "now.snirf")
    assert now["backfilled"] == 0 and now["backfilled_s"] == 0.0
    assert now["backfill_asked"] == 0.0
    with h5py.File(tmp_path / "now.snirf") as f:
        first = int(f["nirs/aux1/dataTimeSeries"][0, 0])
    assert first >= head  # nothing from before the command
    back = _record_summary(daemon, tmp_path / "back.snirf", "--backfill", "2")
    # 2 s of history before the first live sample; a live sample or two may arrive while
    # the history is fetched on a busy machine, and those are live, not backfill
    assert back["backfilled_s"] == pytest.approx(2.0, abs=0.3)
    assert back["backfilled"] == pytest.approx(40, abs=6)
    assert back["backfilled_s"] == pytest.approx(back["backfilled"] / 20.0)
    assert back["first_seq"] <= back["last_seq"] - 40
    every = _record_summary(daemon, tmp_path / "all.snirf", "--backfill", "all")
    assert every["first_seq"] == 0 and every["backfill_asked"] == "all"
