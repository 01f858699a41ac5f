"""Device clock -> host time: jitter removed, drift followed, delay floor kept, restarts."""

from __future__ import annotations

import numpy as np

from nirsd.daemon.clock import DeviceClock

RATE = 100.0


def run(
    clock: DeviceClock,
    seconds: float,
    drift_ppm: float,
    delay_s: float,
    seed: int,
    t_raw_fn=None,
    block: int = 5,
):
    """Feed blocks as a USB link delivers them; returns (true host times, estimates)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    k = np.arange(n)
    true_host = 1.7e9 + k / RATE  # when each sample was measured
    t_dev = k / RATE * (1 + drift_ppm * 1e-6)  # the device crystal runs fast
    raw = t_dev if t_raw_fn is None else t_raw_fn(t_dev)
    est = np.empty(n)
    for i in range(0, n, block):
        j = min(n, i + block)
        # the block leaves when its last sample is taken; USB and the scheduler add
        # a fixed transit and a jitter that is never negative (sometimes 20 ms)
        jitter = rng.exponential(0.002) + (0.02 if rng.random() < 0.02 else 0.0)
        arrival = true_host[j - 1] + delay_s + jitter
        est[i:j] = clock.to_host(clock.unwrap(raw[i:j], j - i), arrival)
    return true_host, est


def test_jitter_removed_and_drift_followed():
    clock = DeviceClock(modulus_s=2**32 / 1e6, rate_hz=RATE)
    true_host, est = run(clock, 120, drift_ppm=80.0, delay_s=0.003, seed=1)
    err = est - (true_host + 0.003)  # the fixed transit is not observable; jitter is
    late = err[len(err) // 2 :]
    assert np.abs(late).max() < 0.002
    assert np.std(np.diff(est[len(est) // 2 :])) < 1e-4  # smooth: no jitter in the times


def test_wrapping_device_clock():
    modulus = 2**32 / 1e6
    clock = DeviceClock(modulus_s=modulus, rate_hz=RATE)
    true_host, est = run(
        clock, 30, 0.0, 0.003, seed=2, t_raw_fn=lambda t: (t + modulus - 10.0) % modulus
    )
    assert np.all(np.diff(est) > 0)
    assert np.abs(est - true_host - 0.003)[len(est) // 2 :].max() < 0.003


def test_restart_is_detected_and_fit_restarted():
    clock = DeviceClock(modulus_s=2**32 / 1e6, rate_hz=RATE)
    run(clock, 20, 0.0, 0.003, seed=3)
    # the device restarts (clock back to 0) while the host has moved on by an hour
    t = clock.unwrap(np.array([0.0, 0.01]), 2)
    host = clock.to_host(t, 1.7e9 + 3600.0)
    assert clock.restarts == 1
    assert abs(host[-1] - (1.7e9 + 3600.0)) < 1e-6


def test_sample_count_clock():
    clock = DeviceClock(modulus_s=None, rate_hz=RATE)
    t = clock.unwrap(None, 3)
    assert np.allclose(t, [0.0, 0.01, 0.02])
    assert np.allclose(clock.unwrap(None, 2), [0.03, 0.04])


def test_a_corrupted_time_field_does_not_pull_the_floor():
    clock = DeviceClock(modulus_s=2**32 / 1e6, rate_hz=RATE)

    def corrupt(t):
        t = t.copy()
        t[3004] += 0.9  # one digit of t_us hit: this sample claims to be 0.9 s later
        return t

    true_host, est = run(clock, 60, 0.0, 0.003, seed=4, t_raw_fn=corrupt)
    good = np.ones(len(est), bool)
    good[3004] = False
    assert clock.outliers >= 1 and clock.restarts == 0
    assert np.abs(est - true_host - 0.003)[good][1000:].max() < 0.003


def test_a_real_clock_step_is_accepted_after_a_few_blocks():
    """The fit follows a host clock stepped back by 5 s, yet published times never go
    back: they hold (rising by 1 µs) until the new host clock passes them."""
    clock = DeviceClock(modulus_s=None, rate_hz=RATE)
    _, est = run(clock, 20, 0.0, 0.003, seed=5)
    t0 = 1.7e9 + 20.0 - 5.0  # the host clock stepped back by 5 s
    hosts = []
    for i in range(200):  # 10 s after the step
        t_dev = np.array([20.0 + 0.05 * i])
        hosts.append(clock.to_host(clock.unwrap(t_dev, 1), t0 + 0.05 * i + 0.003)[0])
    hosts = np.array(hosts)
    assert hosts[0] > est[-1] and np.all(np.diff(hosts) > 0)
    assert clock.clamped >= 90  # the 5 s (100 samples at 20 Hz) the new clock was behind
    assert abs(hosts[-1] - (t0 + 0.05 * 199 + 0.003)) < 1e-6  # then it follows again


def test_one_sample_path_equals_block_path_across_wraps_and_restarts():
    """unwrap_one (the streaming path) and unwrap on blocks give the same device times,
    including wraps, a backwards step (restart) and a clockless device."""
    modulus = 2**14 / 1e3  # 16.4 s: the 40 s stream wraps twice
    rng = np.random.default_rng(11)
    t = np.cumsum(rng.uniform(0.005, 0.015, 4000))
    t[2500:] -= t[2500] - 1.0  # the device restarted
    raw = t % modulus
    one, blocks = DeviceClock(modulus, RATE), DeviceClock(modulus, RATE)
    by_one = np.array([one.unwrap_one(float(v)) for v in raw])
    by_block = np.concatenate(
        [blocks.unwrap(raw[i : i + 7], raw[i : i + 7].size) for i in range(0, raw.size, 7)]
    )
    assert np.array_equal(by_one, by_block)
    assert one._wraps > 0 and np.all(np.diff(by_one[:2500]) > 0)
    # clockless: from the sample count, identical either way
    a, b = DeviceClock(None, RATE), DeviceClock(None, RATE)
    assert [a.unwrap_one(None) for _ in range(10)] == list(b.unwrap(None, 10))


def test_one_sample_host_time_equals_the_array_form():
    a, b = DeviceClock(2**32 / 1e6, RATE), DeviceClock(2**32 / 1e6, RATE)
    rng = np.random.default_rng(4)
    for k in range(3000):  # 30 s: the drift fit is in use for the later samples
        t_dev = k / RATE
        arrival = 1.7e9 + t_dev + 0.003 + rng.exponential(0.002)
        x = a.to_host_one(a.unwrap_one(t_dev), arrival)
        y = b.to_host(b.unwrap(np.array([t_dev]), 1), arrival)
        assert x == y[0]
    assert a._fit is not None and a._fit == b._fit


def test_published_time_never_goes_backwards():
    """Device time stepping back (reordered frames, a restart) and a corrupted time far
    ahead: host times stay strictly increasing and never later than their arrival."""
    rng = np.random.default_rng(8)
    for one in (True, False):
        clock = DeviceClock(modulus_s=2**32 / 1e6, rate_hz=RATE)
        t_dev = np.arange(3000) / RATE
        t_dev[1000:1100] = t_dev[1000:1100][::-1]  # reordered
        t_dev[2000:] -= 7.0  # a restart of the device clock
        t_dev[2500] += 1e4  # a corrupted value
        out, arrivals = [], []
        for k, td in enumerate(t_dev):
            arrival = 1.7e9 + k / RATE + 0.003 + rng.exponential(0.002)
            arrivals.append(arrival)
            if one:
                out.append(clock.to_host_one(clock.unwrap_one(float(td)), arrival))
            else:
                out.append(clock.to_host(clock.unwrap(np.array([td]), 1), arrival)[0])
        out = np.array(out)
        assert np.all(np.diff(out) > 0)
        assert np.all(out <= np.array(arrivals) + 1e-3)
        assert clock.clamped > 0
