"""The NIRSB emulator on a real pty, read through pyserial, and its physiology truth."""

from __future__ import annotations

import math
import os
import select
import time

import numpy as np
import pytest
import serial

from nirsd.cli.testing import wait_for
from nirsd.drivers.base import Event, Info, Sample
from nirsd.drivers.nirsb import NirsbParser
from nirsd.drivers.sim.emulator import Emulator, Faults
from nirsd.drivers.sim.physiology import Physiology
from nirsd.drivers.testing import PortReader


def Reader(port: str) -> PortReader:
    """A pyserial reader of the port through a NIRSB parser."""
    return PortReader(port, NirsbParser())


@pytest.fixture
def open_reader():
    readers: list[Reader] = []

    def make(port: str) -> Reader:
        readers.append(Reader(port))
        return readers[-1]

    yield make
    for r in readers:
        r.close()


def check_against_truth(em: Emulator, samples: list[Sample], seq0: int = 0) -> np.ndarray:
    """Every sample equals physiology.counts(k), k derived from its seq; returns the ks."""
    ks = np.array([(s.seq - seq0) % 65536 for s in samples])
    want = em.physiology.counts(ks)
    for s, w in zip(samples, want):
        assert np.array_equal(s.intensity, w)
    return ks


def test_stream_info_then_consecutive_data(tmp_path, open_reader) -> None:
    link = str(tmp_path / "probe")
    with Emulator(n_channels=8, rate_hz=100.0, link=link) as em:
        assert os.readlink(link) == em.port
        r = open_reader(link)
        r.port.write(b"?b")
        r.pump(lambda: len(r.samples) >= 30)
        assert isinstance(r.frames[0], Info)
        assert r.frames[0] == Info(1, 8, (760.0, 850.0), 100.0, "nirsd-sim")
        seqs = [s.seq for s in r.samples]
        assert seqs == list(range(len(seqs)))
        assert [s.t_dev for s in r.samples[:3]] == [0.0, 0.01, 0.02]
        check_against_truth(em, r.samples)
        assert r.parser.counters.lost_frames == 0
        assert em.samples_sent >= len(seqs)
        assert list(em.sent_k)[:3] == [(0, 0), (1, 1), (2, 2)]
        # stop, then start again: k goes on where it was
        r.port.write(b"s")
        r.pump(lambda: not em.streaming)
        k_stop = em.samples_sent
        r.pump(lambda: len(r.samples) >= k_stop)
        r.port.write(b"b")
        r.pump(lambda: len(r.samples) >= k_stop + 5)
        check_against_truth(em, r.samples)
        assert [s.seq for s in r.samples] == list(range(len(r.samples)))
    assert not os.path.lexists(link)


def test_link_replaces_existing_symlink(tmp_path) -> None:
    link = tmp_path / "probe"
    os.symlink("/nonexistent", link)
    with Emulator(link=str(link)) as em:
        assert os.readlink(link) == em.port
    assert not os.path.lexists(link)


def test_events_consume_seq(open_reader) -> None:
    with Emulator(n_channels=2, rate_hz=100.0, seq0=65534, t0_us=2**32 - 10_000) as em:
        r = open_reader(em.port)
        r.port.write(b"b")
        r.pump(lambda: len(r.samples) >= 2)
        em.send_event(1, "extension")
        r.pump(lambda: any(isinstance(f, Event) for f in r.frames) and len(r.samples) >= 6)
        ev = next(f for f in r.frames if isinstance(f, Event))
        assert (ev.code, ev.label) == (1, "extension")
        seqs = [f.seq for f in r.frames if not isinstance(f, Info)]
        assert seqs == [(65534 + i) % 65536 for i in range(len(seqs))]
        assert r.parser.counters.lost_frames == 0
        assert r.samples[1].t_dev == 0.0  # device clock wrapped at 2**32 µs
        ks = [k for _, k in em.sent_k]
        assert ks == list(range(len(ks)))


def test_corrupted_bytes_never_make_bad_frames(open_reader) -> None:
    faults = Faults(corrupt_rate=2e-3, garbage_every_s=0.05, seed=5)
    with Emulator(n_channels=4, rate_hz=400.0, autostart=True, faults=faults) as em:
        r = open_reader(em.port)
        r.pump(lambda: len(r.samples) >= 300)
        c = r.parser.counters
        assert c.crc_errors + c.decode_errors + c.length_errors > 0
        assert c.garbage_bytes > 0 and c.lost_frames > 0
        check_against_truth(em, r.samples)


def test_drop_rate_loses_frames_not_seq(open_reader) -> None:
    with Emulator(
        n_channels=4, rate_hz=500.0, autostart=True, faults=Faults(drop_rate=0.2, seed=2)
    ) as em:
        r = open_reader(em.port)
        r.pump(lambda: len(r.samples) >= 200)
        ks = check_against_truth(em, r.samples)
        lost = int(ks[-1] - ks[0] + 1 - len(ks))  # pyserial flushes input on open
        assert lost > 0 and r.parser.counters.lost_frames == lost
        assert r.parser.counters.garbage_bytes == 0


def test_stall_then_catch_up(open_reader) -> None:
    with Emulator(
        n_channels=4, rate_hz=200.0, autostart=True, faults=Faults(stall_every_s=0.2, stall_s=0.15)
    ) as em:
        r = open_reader(em.port)
        r.pump(lambda: len(r.samples) >= 150)
        ks = check_against_truth(em, r.samples)
        # nothing lost, only late (pyserial flushes what came before it opened)
        assert list(ks) == list(range(ks[0], ks[0] + len(ks)))


def test_full_pty_buffer_is_bounded(open_reader) -> None:
    em = Emulator(n_channels=64, rate_hz=2000.0)
    em.queue_limit = 20_000
    with em:
        r = open_reader(em.port)
        r.port.write(b"b")  # then nobody reads for a while
        wait_for(lambda: em.overflow_frames > 0, 5.0, what="queue overflow")
        r.pump(lambda: len(r.samples) >= 300)
        check_against_truth(em, r.samples)
        assert r.parser.counters.lost_frames > 0
        assert em.overflow_bytes > 0
        assert em.error is None


def test_unplug_recreates_port_and_link(tmp_path) -> None:
    link = str(tmp_path / "probe")
    faults = Faults(unplug_every_s=0.3, unplug_s=0.2)
    with Emulator(n_channels=2, rate_hz=100.0, link=link, faults=faults, seq0=7) as em:
        first = em.port
        port = serial.serial_for_url(link, baudrate=115200, timeout=0)
        try:
            port.write(b"b")
            parser = NirsbParser()
            got: list = []
            deadline = time.monotonic() + 5.0
            with pytest.raises(serial.SerialException):  # the hang-up
                while True:
                    assert time.monotonic() < deadline
                    select.select([port.fileno()], [], [], 0.05)
                    got += parser.feed(port.read(4096))
        finally:
            port.close()
        assert any(isinstance(f, Sample) for f in got)
        wait_for(
            lambda: os.path.islink(link) and em.port is not None,
            5.0,
            what="the link back after the replug",
        )
        assert os.readlink(link) == em.port and em.unplugs >= 1
        r = Reader(link)
        try:
            r.port.write(b"b")  # a power-cycled probe waits for 'b' again
            r.pump(lambda: len(r.samples) >= 3)
            assert isinstance(r.frames[0], Info)
            assert r.samples[0].seq == 7 and r.samples[0].t_dev == 0.0
            k0 = [k for s, k in em.sent_k if s == 7][-1]  # the sample after power-on
            assert np.array_equal(r.samples[0].intensity, em.physiology.counts([k0])[0])
        finally:
            r.close()
    del first


def test_physiology_forward_model_inverts_exactly() -> None:
    ph = Physiology(6, (760.0, 805.0, 850.0), 50.0, distance_cm=3.5, dpf=5.5, seed=4)
    k = np.arange(0, 5000, 7)
    hb = ph.hb_truth(k)  # µM
    assert hb.shape == (k.size, 2, 6)
    assert 0.5 < np.abs(hb[:, 0]).max() < 5.0  # a physiological µM range
    i = ph.intensity(k)
    a = math.log(10) * ph.eps * ph.distance_cm * ph.dpf  # (n_wl, 2) per M
    od = -np.log(i / ph.i_ref_cw)  # (n, n_ch, n_wl)
    rec = np.einsum("jw,ncw->njc", np.linalg.pinv(a), od) * 1e6
    assert np.allclose(rec, hb, rtol=1e-9, atol=1e-9 * np.abs(hb).max())
    assert np.array_equal(ph.hb_truth(k[5:6]), hb[5:6])  # stateless
    assert ph.counts(k).dtype == np.int32 and (ph.counts(k) > 0).all()


def test_physiology_is_deterministic_and_noisy() -> None:
    k = np.arange(100)
    a = Physiology(4, (760, 850), 10.0, noise=0.01, seed=1)
    b = Physiology(4, (760, 850), 10.0, noise=0.01, seed=1)
    assert np.array_equal(a.counts(k), b.counts(k))
    assert np.array_equal(a.counts(k[40:60]), a.counts(k)[40:60])
    clean = Physiology(4, (760, 850), 10.0, seed=1).intensity(k)
    rel = a.intensity(k) / clean - 1
    assert 0.007 < rel.std() < 0.013
    assert not np.array_equal(Physiology(4, (760, 850), 10.0, seed=2).counts(k), a.counts(k))
    a.responses.append(lambda t: np.ones((t.size, 2, 4)))
    assert np.allclose(a.hb_truth(k) - b.hb_truth(k), 1.0)
