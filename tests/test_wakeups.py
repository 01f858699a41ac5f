"""The loop's poll (daemon/wakeups.py) on real sockets: a port that has data wakes it,
a control request and a subscription notice are seen, input a budget left behind is
not waited for, and a notice a frame's send took from the descriptor is seen within
CHECK_S."""

from __future__ import annotations

import os
import time

import zmq

from nirsd.daemon.wakeups import CHECK_S, Wakeups


def _wait_until(w: Wakeups, want, deadline_s: float = 2.0):
    """wait() until ``want(port, readable)`` holds; the turns and seconds it took."""
    t0, turns = time.monotonic(), 0
    while time.monotonic() - t0 < deadline_s:
        port, readable, _ = w.wait(10)
        turns += 1
        if want(port, readable):
            return turns, time.monotonic() - t0
    raise AssertionError("not woken before the deadline")


def test_the_port_and_both_sockets_wake_the_loop(tmp_path):
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.bind(f"ipc://{tmp_path}/ctl")
    xpub = ctx.socket(zmq.XPUB)
    xpub.bind(f"ipc://{tmp_path}/data")
    r, wr = os.pipe()
    try:
        w = Wakeups((router, xpub))
        w.watch_port(r)
        assert w.wait(0)[:2] == (False, [])
        os.write(wr, b"x")
        assert _wait_until(w, lambda port, _: port)
        os.read(r, 1)
        req = ctx.socket(zmq.REQ)
        req.connect(f"ipc://{tmp_path}/ctl")
        req.send(b"status")
        _wait_until(w, lambda _, socks: router in socks)
        assert router.recv_multipart(zmq.NOBLOCK)[-1] == b"status"
        sub = ctx.socket(zmq.SUB)
        sub.connect(f"ipc://{tmp_path}/data")
        sub.setsockopt(zmq.SUBSCRIBE, b"hb")
        _wait_until(w, lambda _, socks: xpub in socks)
        assert xpub.recv(zmq.NOBLOCK) == b"\x01hb"
        w.watch_port(None)
        os.write(wr, b"y")
        assert w.wait(0)[0] is False  # a port no longer watched does not wake it
        for s in (req, sub):
            s.close(0)
    finally:
        os.close(r)
        os.close(wr)
        router.close(0)
        xpub.close(0)
        ctx.term()


def test_input_a_budget_left_is_not_waited_for(tmp_path):
    """Three requests, served one per turn: after ``served`` the next wait returns at
    once with the socket readable, until none is left; then it sleeps its timeout."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.bind(f"ipc://{tmp_path}/ctl")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"ipc://{tmp_path}/ctl")
    try:
        w = Wakeups((router,))
        for i in range(3):
            dealer.send_multipart([b"", b"req%d" % i])
        _wait_until(w, lambda _, socks: router in socks)
        bodies = []
        for _ in range(3):
            bodies.append(router.recv_multipart(zmq.NOBLOCK)[-1])  # a budget of one
            w.served(router)
            t0 = time.monotonic()
            port, socks, _ = w.wait(1000)
            if len(bodies) < 3:
                assert router in socks and time.monotonic() - t0 < 0.5
        assert bodies == [b"req0", b"req1", b"req2"]
        t0 = time.monotonic()
        assert w.wait(200)[:2] == (False, [])  # nothing left: it slept
        assert time.monotonic() - t0 >= 0.15
    finally:
        dealer.close(0)
        router.close(0)
        ctx.term()


def test_a_notice_taken_by_a_send_is_seen_within_check_s(tmp_path):
    """Frames sent on the data socket while a subscription arrives may take its notice
    from ZMQ_FD; the periodic events check still sees it, within CHECK_S of turns that
    the port keeps waking."""
    ctx = zmq.Context()
    xpub = ctx.socket(zmq.XPUB)
    xpub.bind(f"ipc://{tmp_path}/data")
    r, wr = os.pipe()
    os.write(wr, b"x")  # a port that is always readable: every turn is a frame's
    subs = []
    try:
        w = Wakeups((xpub,))
        w.watch_port(r)
        seen = 0
        for i in range(5):
            sub = ctx.socket(zmq.SUB)
            sub.connect(f"ipc://{tmp_path}/data")
            sub.setsockopt(zmq.SUBSCRIBE, b"t%d" % i)
            subs.append(sub)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.0:
                port, socks, _ = w.wait(10)
                assert port
                xpub.send_multipart([b"hb", b"head", b"payload"])  # a frame each turn
                if xpub in socks:
                    note = xpub.recv(zmq.NOBLOCK)
                    w.served(xpub)
                    if note == b"\x01t%d" % i:
                        seen += 1
                        break
            assert time.monotonic() - t0 < 2 * CHECK_S + 0.5
        assert seen == 5
    finally:
        for s in subs:
            s.close(0)
        os.close(r)
        os.close(wr)
        xpub.close(0)
        ctx.term()
