"""``nirsd console`` as a subprocess against a live daemon: the API, the stream, access.

Only 127.0.0.1 is ever connected to; the token test listens on 0.0.0.0 (an address
that is not loopback) and still connects through 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("aiohttp")

from console_support import ConsoleProcess, EventStream, request  # noqa: E402
from stream_support import joined, recv_topic  # noqa: E402

from nirsd.cli.testing import DaemonProcess, free_port, simulated_config, wait_for  # noqa: E402
from nirsd.daemon.endpoints import Endpoints  # noqa: E402

CHANNELS = ("L3 left", "L3 right", "L4 left")
PROTOCOL = '[protocol.short]\nsteps = [["rest", 3], ["extension", 4], ["rest", 30]]\n'


def config() -> str:
    chans = "".join(f'[[channel]]\nindex = {i}\nlabel = "{x}"\n' for i, x in enumerate(CHANNELS))
    return simulated_config(channels=len(CHANNELS), rate_hz=20.0, extra=PROTOCOL + chans)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One daemon for the module: each test leaves no epoch, protocol or session open."""
    d = DaemonProcess(tmp_path_factory.mktemp("console-daemon"), config())
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def console(daemon):
    c = ConsoleProcess(daemon).start()
    try:
        yield c
    finally:
        c.stop()


def test_status_describes_the_probe_and_the_daemon(console):
    def ready():
        status, body, _ = request(console.base + "/api/status")
        return body if status == 200 and body.get("daemon_state") == "streaming" else None

    body = wait_for(ready, 20, what="status with a streaming daemon")
    assert body["channels"] == list(CHANNELS)
    assert body["labels"] == ["rest", "extension", "flexion"]
    assert body["protocols"] == ["short"]
    assert body["rate"].startswith("Sampling at ") and "device set to 20 Hz" in body["rate"]
    assert console.url.startswith("http://127.0.0.1:") and "token" not in console.url
    assert any(x.startswith("patient page: ") and x.endswith("/patient") for x in console.lines)


def test_mark_through_the_api_reaches_the_marker_topic(console, daemon):
    with daemon.subscriber(("marker", "status")) as sub:
        joined(sub)  # SUB joins asynchronously; a marker before that is not seen
        status, reply, _ = request(
            console.base + "/api/mark", {"label": "extension", "action": "start"}
        )
        assert status == 200 and reply["ok"] and reply["label"] == "extension"
        msg = recv_topic(sub, "marker")
    assert msg is not None and msg.header["label"] == "extension"
    assert msg.header["action"] == "start" and msg.header["id"] == reply["id"]
    status, reply, _ = request(console.base + "/api/mark", {"label": "nonsense"})
    assert status == 409 and "nonsense" in reply["error"]  # the daemon's own refusal
    status, reply, _ = request(console.base + "/api/mark", {"label": "rest", "action": "later"})
    assert status == 400
    assert request(console.base + "/api/mark", {"label": "extension", "action": "end"})[0] == 200


def test_stream_sends_a_snapshot_then_points_and_events(console):
    wait_for(lambda: request(console.base + "/api/status")[1].get("connected"), 20)
    stream = EventStream(console.base, "seconds=30")
    try:
        wait_for(lambda: len(stream.named("hb")) >= 5, 20, what="five hb events")
        snap = stream.named("snapshot")[0]
        assert snap["info"]["channels"] == list(CHANNELS)
        hb = stream.named("hb")
        seqs = [s for e in hb for s in e["seq"]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        steps = {b - a for a, b in zip(seqs, seqs[1:])}
        assert steps == {2}  # 20 Hz shown at 10 points per second: every second sample
        assert all(len(e["hbo"]) == len(CHANNELS) for e in hb)
        request(console.base + "/api/mark", {"label": "flexion"})
        wait_for(lambda: stream.named("marker"), 10, what="the marker on the stream")
        assert [m["label"] for m in stream.named("marker")][:1] == ["flexion"]
        wait_for(
            lambda: any((s.get("epoch") or {}).get("label") == "flexion"
                        for s in stream.named("state")),
            10,
        )  # fmt: skip
        request(console.base + "/api/mark", {"label": "flexion", "action": "end"})
    finally:
        stream.close()


def test_protocol_start_and_stop_through_the_api(console):
    wait_for(lambda: request(console.base + "/api/status")[1].get("connected"), 20)
    status, reply, _ = request(console.base + "/api/protocol/start", {"name": "short"})
    assert status == 200 and reply["protocol"]["label"] == "rest"
    body = wait_for(lambda: (b := request(console.base + "/api/status")[1])["protocol"] and b, 10)
    assert body["protocol"]["next"] == {"label": "extension", "seconds": 4.0}
    assert 0 < body["protocol"]["time_left_s"] <= 3.0
    status, reply, _ = request(console.base + "/api/protocol/start", {"name": "short"})
    assert status == 409 and "running" in reply["error"]
    status, reply, _ = request(console.base + "/api/protocol/stop", {})
    assert status == 200 and reply["protocol"] is None


def test_state_changing_requests_check_origin_and_content_type(console):
    url = console.base + "/api/mark"
    status, body, _ = request(url, {"label": "rest"}, {"Origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in body["error"]
    status, _, _ = request(url, {"label": "rest"}, {"Origin": console.base})
    assert status == 200
    assert request(url, {"label": "rest", "action": "end"})[0] == 200
    status, _, _ = request(url, raw=b"label=rest", headers={"Content-Type": "text/plain"})
    assert status == 415
    # DNS rebinding: a loopback console answers only to loopback host names
    status, _, _ = request(console.base + "/api/status", headers={"Host": "evil.example"})
    assert status == 403
    status, _, _ = request(
        url, raw=b"{" + b" " * 70_000 + b"}", headers={"Content-Type": "application/json"}
    )
    assert status == 413  # bodies are bounded
    status, _, _ = request(url, raw=b"[1, 2", headers={"Content-Type": "application/json"})
    assert status == 400
    status, _, headers = request(console.base + "/")
    assert status == 200 and headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_beyond_loopback_every_request_needs_the_token(daemon, tmp_path):
    token = "a-token-for-the-bedside-console"
    f = tmp_path / "token"
    f.write_text(token + "\n")
    f.chmod(0o600)
    port = free_port()
    c = ConsoleProcess(daemon, "--token-file", str(f), listen=f"0.0.0.0:{port}").start()
    try:
        assert c.token == token
        assert any("every request needs the token" in x for x in c.lines)
        base = f"http://127.0.0.1:{port}"
        for path in ("/", "/patient", "/api/status", "/static/operator.js", "/api/stream"):
            assert request(base + path)[0] == 401, path
        assert request(base + "/api/status", headers={"Authorization": "Bearer wrong"})[0] == 403
        assert request(base + "/api/status?token=wrong")[0] == 403
        bearer = {"Authorization": f"Bearer {token}"}
        assert request(base + "/api/status", headers=bearer)[0] == 200
        # the printed URL: the token goes into a cookie and out of the address bar
        status, _, headers = request(f"{base}/patient?token={token}")
        assert status == 303 and headers["Location"] == "/patient"
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        jar = {"Cookie": cookie.split(";")[0]}
        assert request(base + "/patient", headers=jar)[0] == 200
        # a POST with the cookie but no Origin is not a page of ours: refused
        assert request(base + "/api/mark", {"label": "rest"}, jar)[0] == 403
        origin = {**jar, "Origin": base}
        assert request(base + "/api/mark", {"label": "rest"}, origin)[0] == 200
        assert request(base + "/api/mark", {"label": "rest"}, bearer)[0] == 200
        assert request(base + "/api/mark", {"label": "rest"})[0] == 401
        end = {"label": "rest", "action": "end"}
        assert request(base + "/api/mark", end, bearer)[0] == 200
    finally:
        c.stop()


def test_bad_listen_and_token_file_are_config_errors(daemon, tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "nirsd.cli", "console", *args],
            env=daemon.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    out = run("--listen", "nonsense")
    assert out.returncode == 78 and "--listen" in out.stderr
    out = run("--listen", "0.0.0.0:0", "--token-file", str(tmp_path / "missing"))
    assert out.returncode == 78 and "--token-file" in out.stderr
    assert "Traceback" not in out.stderr


def test_port_in_use_is_a_clear_error(console, daemon):
    port = console.base.rsplit(":", 1)[1]
    out = subprocess.run(
        [sys.executable, "-m", "nirsd.cli", "console", "--listen", f"127.0.0.1:{port}"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


def test_session_start_and_stop_through_the_api(console, daemon):
    wait_for(lambda: request(console.base + "/api/status")[1].get("connected"), 20)
    body = {"subject": "P01", "session": "week0", "group": "eperisone", "task": "lumbar"}
    with daemon.subscriber(("session", "status")) as sub:
        joined(sub)
        status, reply, _ = request(console.base + "/api/session/start", body)
        assert status == 200, reply
        assert reply["subject"] == "P01" and isinstance(reply["seq"], int)
        msg = recv_topic(sub, "session")
        assert msg is not None and msg.header["session_id"] == reply["session_id"]
        state = wait_for(
            lambda: (s := request(console.base + "/api/status")[1])["session"] and s, 10
        )
        assert state["session"]["session_id"] == reply["session_id"]
        status, again, _ = request(console.base + "/api/session/start", body)
        assert status == 409 and "one session at a time" in again["error"]
        status, bad, _ = request(console.base + "/api/session/start", {"subject": "P01"})
        assert status == 400  # no session label
        status, stopped, _ = request(console.base + "/api/session/stop", {})
        assert status == 200 and stopped["end_seq"] > reply["seq"]
        msg = recv_topic(sub, "session")
        assert msg is not None and msg.header["event"] == "end"
    state = wait_for(
        lambda: (s := request(console.base + "/api/status")[1])["last_session"] and s, 10
    )
    assert state["session"] is None and state["last_session"]["end_seq"] == stopped["end_seq"]


class TcpDaemon(DaemonProcess):
    """A daemon on the tcp:// endpoints of its config (not the helper's IPC ones)."""

    tcp: Endpoints

    @property
    def endpoints(self) -> Endpoints:
        return self.tcp


def test_a_remote_daemon_is_reached_over_curve(tmp_path):
    """The daemon on tcp:// with CURVE (127.0.0.1): the console's key works, another not."""
    from nirsd.daemon.security import generate_keypair

    keys = tmp_path / "keys"
    for name in ("server", "console", "stranger"):
        generate_keypair(keys, name)
    data, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    extra = (
        f'[endpoints]\ndata = "{data}"\ncontrol = "{control}"\n'
        f'[security]\ncurve = true\nserver_secret_key_file = "{keys / "server.key_secret"}"\n'
        f'allowed_clients = ["{keys / "console.key"}"]\n'
    )
    d = TcpDaemon(tmp_path, simulated_config(channels=2, rate_hz=20.0, extra=extra))
    d.tcp = Endpoints(data, control)
    d.start(wait_streaming=False)
    consoles = []
    try:
        for name in ("console", "stranger"):
            args = ["--data", data, "--control", control, "--server-key", str(keys / "server.key")]
            args += ["--client-key", str(keys / f"{name}.key_secret")]
            consoles.append(ConsoleProcess(d, *args).start())
        ok, stranger = consoles

        def streaming():
            return request(ok.base + "/api/status")[1].get("daemon_state") == "streaming"

        wait_for(streaming, 30, what="the console with the listed key to see the daemon")
        status, reply, _ = request(ok.base + "/api/mark", {"label": "extension"})
        assert status == 200 and reply["label"] == "extension"
        body = request(stranger.base + "/api/status")[1]
        assert body["connected"] is False and body["daemon_state"] == "unreachable"
        assert request(stranger.base + "/api/mark", {"label": "extension"})[0] == 503
    finally:
        for c in consoles:
            c.stop()
        d.stop()


def test_console_started_before_the_daemon_waits_and_then_follows_it(tmp_path):
    d = DaemonProcess(tmp_path, config())
    c = ConsoleProcess(d).start()  # the bedside box may start the console first
    try:
        body = wait_for(lambda: request(c.base + "/api/status")[1], 10)
        assert body["connected"] is False and body["daemon_state"] == "unreachable"
        assert request(c.base + "/api/mark", {"label": "rest"})[0] == 503
        d.start()
        body = wait_for(
            lambda: (b := request(c.base + "/api/status")[1])["daemon_state"] == "streaming" and b,
            30,
            what="the console to find the daemon",
        )
        assert body["channels"] == list(CHANNELS) and body["outage_since"] is None
    finally:
        c.stop()
        d.stop()
