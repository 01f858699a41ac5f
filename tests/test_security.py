"""Who may connect: CURVE over real TCP, allow lists, config validation, IPC file modes."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nirsd.cli.testing import DaemonProcess, free_port, simulated_config, wait_for
from nirsd.clients.subscriber import ControlClient, Subscriber
from nirsd.core.errors import ConfigError, NirsdError
from nirsd.daemon import config as config_mod
from nirsd.daemon.endpoints import Endpoints
from nirsd.daemon.security import ClientKeys, generate_keypair, load_key_file


class TcpDaemon(DaemonProcess):
    """A daemon whose endpoints are the tcp:// ones written in its config."""

    def __init__(self, workdir: Path, config_text: str, data: str, control: str) -> None:
        super().__init__(workdir, config_text)
        self._tcp = Endpoints(data, control)

    @property
    def endpoints(self) -> Endpoints:
        return self._tcp


@pytest.fixture(scope="module")
def curve_daemon(tmp_path_factory):
    """alice: data and control; bob: data only; mallory: keys nobody listed."""
    work = tmp_path_factory.mktemp("curve")
    keys = work / "keys"
    for name in ("server", "alice", "bob", "mallory"):
        generate_keypair(keys, name)
    bob_public = load_key_file(keys / "bob.key", "bob")[0].decode()
    data, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    extra = (
        f'[endpoints]\ndata = "{data}"\ncontrol = "{control}"\n'
        f"[security]\ncurve = true\n"
        f'server_secret_key_file = "{keys / "server.key_secret"}"\n'
        f'allowed_clients = ["{keys / "alice.key"}", "{bob_public}"]\n'
        f'control_clients = ["{keys / "alice.key"}"]\n'
    )
    proc = TcpDaemon(work, simulated_config(channels=4, rate_hz=20.0, extra=extra), data, control)
    proc.start(wait_streaming=False)
    client = {
        name: ClientKeys.load(str(keys / "server.key"), str(keys / f"{name}.key_secret"))
        for name in ("alice", "bob", "mallory")
    }
    try:
        alice = ControlClient(control, timeout_s=1.0, curve=client["alice"])
        try:

            def streaming() -> bool:
                if proc.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited {proc.proc.returncode}:\n{proc.log()}")
                try:
                    return alice.status()["state"] == "streaming"
                except NirsdError:
                    return False

            wait_for(streaming, 20.0, interval=0.1, what="CURVE daemon streaming")
        finally:
            alice.close()
        yield proc, client
    finally:
        proc.stop()


def test_allowed_client_subscribes_and_marks(curve_daemon):
    proc, client = curve_daemon
    with Subscriber(["hb", "marker"], endpoints=proc.endpoints, curve=client["alice"]) as sub:
        msg = wait_for(lambda: sub.recv(0.5), 10.0, what="hb over CURVE")
        assert msg.topic == "hb" and msg.array.shape[1:] == (3, 4)
        ctl = ControlClient(proc.endpoints.control, timeout_s=5.0, curve=client["alice"])
        try:
            ack = ctl.mark("rest", "instant")
            assert ack["label"] == "rest" and isinstance(ack["seq"], int)
            assert ctl.status()["state"] == "streaming"
        finally:
            ctl.close()

        def marker():
            m = sub.recv(0.5)
            return m if m is not None and m.topic == "marker" else None

        published = wait_for(marker, 10.0, what="the marker published over CURVE")
        assert published.header["label"] == "rest" and published.header["seq"] == ack["seq"]


def test_unknown_key_gets_nothing_and_cannot_mark(curve_daemon):
    proc, client = curve_daemon
    good = Subscriber(["hb"], endpoints=proc.endpoints, curve=client["alice"])
    bad = Subscriber(["hb"], endpoints=proc.endpoints, curve=client["mallory"])
    try:
        # alice receives plenty in the window in which mallory receives nothing
        got = [good.recv(0.5) for _ in range(10)]
        assert sum(m is not None for m in got) >= 5
        assert bad.recv(0.5) is None
    finally:
        good.close()
        bad.close()
    ctl = ControlClient(proc.endpoints.control, timeout_s=1.0, curve=client["mallory"])
    try:
        with pytest.raises(NirsdError, match="no reply"):
            ctl.mark("rest", "instant")
    finally:
        ctl.close()
    mallory = client["mallory"].public.decode()
    wait_for(lambda: mallory in proc.log(), 5.0, what="rejection logged")
    rejected = [line for line in proc.log().splitlines() if mallory in line]
    assert all("curve_client_rejected" in line for line in rejected)


def test_control_allow_list_is_separate(curve_daemon):
    proc, client = curve_daemon
    with Subscriber(["hb"], endpoints=proc.endpoints, curve=client["bob"]) as sub:
        assert wait_for(lambda: sub.recv(0.5), 10.0, what="bob gets data").topic == "hb"
        ctl = ControlClient(proc.endpoints.control, timeout_s=1.0, curve=client["bob"])
        try:
            with pytest.raises(NirsdError, match="no reply"):
                ctl.status()
        finally:
            ctl.close()


def test_plain_client_on_curve_endpoint_gets_nothing(curve_daemon):
    proc, _ = curve_daemon
    with Subscriber(["hb"], endpoints=proc.endpoints) as sub:
        assert sub.recv(1.0) is None


def test_plain_tcp_refused_by_validation(tmp_path):
    raw = {"endpoints": {"data": "tcp://127.0.0.1:5555"}}
    with pytest.raises(ConfigError) as err:
        config_mod.parse(raw)
    assert err.value.key == "endpoints.data"
    raw = {"endpoints": {"control": "tcp://0.0.0.0:5556"}}
    with pytest.raises(ConfigError) as err:
        config_mod.parse(raw)
    assert err.value.key == "endpoints.control"
    ok = config_mod.parse(
        {"endpoints": {"data": "tcp://127.0.0.1:5555"}, "security": {"allow_plain_tcp": True}}
    )
    assert ok.security.allow_plain_tcp and ok.endpoints.data == "tcp://127.0.0.1:5555"
    with pytest.raises(ConfigError) as err:
        config_mod.parse({"security": {"curve": True, "allowed_clients": ["x"]}})
    assert err.value.key == "security.server_secret_key_file"
    with pytest.raises(ConfigError) as err:
        config_mod.parse({"security": {"curve": "yes"}})
    assert err.value.key == "security.curve"


def test_run_refuses_plain_tcp_and_bad_key_files(tmp_path):
    """`nirsd run` exits 78 naming the key, for a flag as much as for the config."""
    env_cmd = [sys.executable, "-m", "nirsd.cli", "run"]
    port = free_port()
    res = subprocess.run(
        [*env_cmd, "--data", f"tcp://127.0.0.1:{port}", "--control", f"ipc://{tmp_path}/control"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 78, res.stderr
    assert "endpoints.data" in res.stderr
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        f'[endpoints]\ndata = "tcp://127.0.0.1:{port}"\n'
        f'control = "ipc://{tmp_path}/control"\n'
        f"[security]\ncurve = true\n"
        f'server_secret_key_file = "{tmp_path}/missing.key_secret"\n'
        f'allowed_clients = ["{"A" * 40}"]\n'
    )
    res = subprocess.run(
        [*env_cmd, "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 78, res.stderr
    assert "security.server_secret_key_file" in res.stderr and "Traceback" not in res.stderr


def test_keys_files_and_modes(tmp_path):
    public_path, secret_path = generate_keypair(tmp_path / "k", "server")
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644
    public, secret = load_key_file(secret_path, "k", secret=True)
    assert load_key_file(public_path, "k") == (public, None)
    assert len(public) == 40 and len(secret) == 40
    with pytest.raises(NirsdError, match="exists"):
        generate_keypair(tmp_path / "k", "server")
    with pytest.raises(ConfigError, match="no secret key"):
        load_key_file(public_path, "security.server_secret_key_file", secret=True)


def test_ipc_sockets_are_0660(daemon):
    for name in ("data", "control"):
        mode = stat.S_IMODE((daemon.runtime / name).stat().st_mode)
        assert mode == 0o660, f"{name}: {oct(mode)}"


def test_cli_clients_use_curve_keys(curve_daemon):
    proc, client = curve_daemon
    keys = proc.workdir / "keys"
    ep = ["--data", proc.endpoints.data, "--control", proc.endpoints.control]
    res = proc.cli(
        "status",
        *ep,
        "--server-key",
        str(keys / "server.key"),
        "--client-key",
        str(keys / "alice.key_secret"),
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["state"] == "streaming"
    res = proc.cli(
        "tail",
        "--topic",
        "hb",
        "--json",
        "-n",
        "2",
        *ep,
        "--server-key",
        str(keys / "server.key"),
        "--client-key",
        str(keys / "alice.key_secret"),
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert [len(json.loads(line)["hbo"]) for line in res.stdout.splitlines()] == [4, 4]
    res = proc.cli(
        "status",
        *ep,
        "--timeout",
        "1",
        "--server-key",
        str(keys / "server.key"),
        "--client-key",
        str(keys / "mallory.key_secret"),
        timeout=60,
    )
    assert res.returncode == 1 and "no reply" in res.stderr
    # the viewer takes the same flags (and shows data only with an allowed key)
    res = proc.cli(
        "view",
        "--once",
        "--wait",
        "10",
        *ep,
        "--server-key",
        str(keys / "server.key"),
        "--client-key",
        str(keys / "alice.key_secret"),
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "ch0" in res.stdout


def test_keys_command(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "nirsd.cli", "keys", "--out", str(tmp_path), "--name", "viewer1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert load_key_file(out["public_file"], "k")[0].decode() == out["public_key"]
    assert stat.S_IMODE(Path(out["secret_file"]).stat().st_mode) == 0o600
    again = subprocess.run(
        [sys.executable, "-m", "nirsd.cli", "keys", "--out", str(tmp_path), "--name", "viewer1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "exists" in again.stderr
