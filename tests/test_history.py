"""The history control request: ranges, paging and every malformed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nirsd.cli.testing import wait_for
from nirsd.clients.subscriber import ControlClient
from nirsd.core.errors import NirsdError


@pytest.fixture
def client(shared_daemon):
    """A control client of the module's daemon (history requests only read the ring)."""
    daemon = shared_daemon
    wait_for(lambda: daemon.control().status()["samples"] >= 20, 20, what="20 samples")
    c = ControlClient(daemon.endpoints.control, timeout_s=5)
    try:
        yield c
    finally:
        c.close()


def test_empty_ranges_are_valid_empty_replies(client):
    head = client.info()["seq"]
    for fields in (
        {"since": head + 1000},
        {"seconds": 0},
        {"since": 10, "until": 5},
        {"since": 3, "until": 3},
    ):
        reply, frames = client.request("history", **fields)
        assert reply["n"] == 0 and reply["more"] is False, fields
        assert [len(f) for f in frames] == [0, 0]
        assert reply["hb"]["shape"][0] == 0
    msgs = client.history(since=head + 1000)
    assert msgs["hb"].n == 0


def test_ranges_and_paging_are_exact(client):
    reply, frames = client.request("history", since=5, until=15)
    assert (reply["seq"], reply["n"], reply["next"], reply["more"]) == (5, 10, 15, False)
    hb = np.frombuffer(frames[1], reply["hb"]["dtype"]).reshape(reply["hb"]["shape"])
    assert hb.shape == (10, 3, 8)
    paged, _ = client.request("history", since=5, until=15, max_samples=4)
    assert (paged["n"], paged["next"], paged["more"]) == (4, 9, True)
    joined = client.history(since=5, until=15)["hb"]
    np.testing.assert_array_equal(joined.array, hb)
    upto_zero, _ = client.request("history", since=0, until=0)
    assert upto_zero["n"] == 0 and upto_zero["more"] is False


@pytest.mark.parametrize(
    "fields,words",
    [
        ({"seconds": math.nan}, "finite"),
        ({"seconds": math.inf}, "finite"),
        ({"seconds": -1}, "finite"),
        ({"since": 1, "seconds": 2}, "exactly one"),
        ({}, "exactly one"),
        ({"since": 0, "max_samples": 0}, "at least 1"),
        ({"since": "0"}, "integer"),
        ({"since": 0, "until": 1.5}, "integer"),
    ],
)
def test_malformed_history_requests_get_clear_errors(client, fields, words):
    with pytest.raises(NirsdError, match=words):
        client.request("history", **fields)
    assert client.status()["state"] == "streaming"
