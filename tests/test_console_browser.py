"""The console's pages in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) against a live daemon and console.

Screenshots are saved under the test's tmp dir; with ``NIRSD_DOCS_SCREENSHOTS=1`` the
operator and patient screenshots are also copied to docs/ for docs/console.md.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("selenium")

from console_support import ConsoleProcess, browser, chromium  # noqa: E402
from stream_support import joined, recv_topic  # noqa: E402

from nirsd.cli.testing import DaemonProcess, simulated_config, wait_for  # noqa: E402
from nirsd.core.errors import NirsdError  # noqa: E402

if chromium() is None:
    pytest.skip(
        "chromium and chromedriver are not installed "
        "(apt-get install chromium chromium-driver; .ci/run does it)",
        allow_module_level=True,
    )

from selenium.webdriver.common.by import By  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
CHANNELS = ("L3 left", "L3 right", "L4 left", "L4 right")
PROTOCOL = '[protocol.lumbar]\nsteps = [["rest", 4], ["extension", 6], ["rest", 30]]\n'


def config() -> str:
    chans = "".join(f'[[channel]]\nindex = {i}\nlabel = "{x}"\n' for i, x in enumerate(CHANNELS))
    return simulated_config(channels=len(CHANNELS), rate_hz=20.0, extra=PROTOCOL + chans)


@pytest.fixture
def daemon(tmp_path):
    d = DaemonProcess(tmp_path, config())
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def console(daemon):
    c = ConsoleProcess(daemon).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def driver(tmp_path):
    d = browser(tmp_path / "profile", size="1400,1000")
    try:
        yield d
    finally:
        d.quit()


def save(driver, tmp_path: Path, name: str, docs: str | None = None) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    if docs and os.environ.get("NIRSD_DOCS_SCREENSHOTS") == "1":
        shutil.copy(path, DOCS / docs)
    return path


def errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def open_operator(driver, console) -> None:
    driver.get(console.url)
    wait_for(
        lambda: len(driver.find_elements(By.CSS_SELECTOR, "#plots .card")) == len(CHANNELS),
        20,
        what="one plot per channel",
    )
    wait_for(lambda: "daemon streaming" in text(driver, "daemon-state"), 20, what="streaming")


def plot_pixels(driver) -> np.ndarray:
    from matplotlib import image

    png = driver.find_element(By.ID, "plots").screenshot_as_png
    return image.imread(io.BytesIO(png), format="png")


def test_operator_page_loads_without_errors_and_the_traces_move(console, driver, tmp_path):
    open_operator(driver, console)
    cards = driver.find_elements(By.CSS_SELECTOR, "#plots .card")
    assert [c.find_element(By.CLASS_NAME, "chan").text for c in cards] == list(CHANNELS)
    wait_for(
        lambda: all(b.text == "good" for b in driver.find_elements(By.CSS_SELECTOR, ".badge")),
        20,
        what="every channel's quality in words",
    )
    assert text(driver, "rate").startswith("Sampling at ")
    assert [b.text for b in driver.find_elements(By.CSS_SELECTOR, ".mark-start")] == [
        "Start rest",
        "Start extension",
        "Start flexion",
    ]
    first = plot_pixels(driver)
    save(driver, tmp_path, "operator-1")
    shown = []  # (fraction of the plot area changed since the first screenshot, pixels)

    def moved() -> bool:
        second = plot_pixels(driver)
        assert first.shape == second.shape
        shown.append((float(np.mean(np.any(np.abs(first - second) > 0.05, axis=-1))), second))
        return shown[-1][0] > 0.005

    # the traces move as data arrives: wait for it (with a deadline), never a fixed sleep
    try:
        wait_for(moved, 20, interval=0.2, what="the plots to move")
    finally:
        save(driver, tmp_path, "operator-2")
    assert shown[-1][0] > 0.005, f"only {shown[-1][0]:.2%} of the plot area changed"
    assert errors(driver) == []


@pytest.mark.timing
def test_extension_button_puts_a_marker_on_the_daemons_topic_within_a_second(
    console, daemon, driver, tmp_path
):
    open_operator(driver, console)
    with daemon.subscriber(("marker", "status")) as sub:
        joined(sub)  # the SUB socket has joined before the click
        button = driver.find_element(By.ID, "mark-start-extension")
        clicked = time.monotonic()
        button.click()
        msg = sub.recv(5.0)
        while msg is not None and msg.topic != "marker":
            msg = sub.recv(5.0)
        took = time.monotonic() - clicked
        assert msg is not None and msg.header["label"] == "extension"
        assert msg.header["action"] == "start" and msg.header["source"] == "control"
        assert took < 1.0, f"the marker took {took:.2f} s"
        wait_for(lambda: text(driver, "epoch-open").startswith("Open: extension"), 5)
        assert text(driver, "mark-start-flexion") == "Start flexion (ends extension)"
        assert driver.find_element(By.ID, "mark-start-extension").get_attribute("disabled")
        # the baseline asks first: Cancel does nothing, confirming re-takes it
        driver.find_element(By.ID, "baseline").click()
        dialog = driver.find_element(By.ID, "baseline-dialog")
        wait_for(lambda: dialog.get_attribute("open") is not None, 5)
        dialog.find_element(By.CSS_SELECTOR, "button[value=cancel]").click()
        wait_for(lambda: dialog.get_attribute("open") is None, 5)
        driver.find_element(By.ID, "baseline").click()
        driver.find_element(By.ID, "baseline-confirm").click()
        deadline = time.monotonic() + 5
        events = []
        while time.monotonic() < deadline:
            m = sub.recv(0.5)
            if m is not None and m.topic == "status" and m.header.get("event") != "periodic":
                events.append(m.header.get("event"))
            if "baseline" in events:
                break
        assert events.count("baseline") == 1
        wait_for(lambda: "Baseline re-taken" in text(driver, "message"), 5)
    save(driver, tmp_path, "operator-marked")
    assert errors(driver) == []


def test_protocol_from_the_operator_page_counts_down_on_the_patient_screen(
    console, daemon, driver, tmp_path
):
    open_operator(driver, console)
    ended_epoch(driver)
    rows = driver.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
    assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == list(CHANNELS)
    heads = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#summary thead th")]
    assert heads[:4] == ["Channel", "mean ΔHbO", "mean ΔHbR", "mean ΔHbT"]
    driver.find_element(By.ID, "protocol-start").click()
    wait_for(lambda: "step 1 of 3: rest" in text(driver, "protocol-step"), 10)
    operator = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(console.base + "/patient")
    wait_for(lambda: text(driver, "instruction") == "REST", 10, what="REST on the patient page")
    first = int(wait_for(lambda: text(driver, "countdown"), 5))
    wait_for(lambda: int(text(driver, "countdown") or 99) < first, 5, what="the countdown")
    assert text(driver, "next") == "Next: EXTENSION (6 s)"
    wait_for(lambda: text(driver, "instruction") == "EXTENSION", 10, what="the step change")
    assert driver.execute_script("return window.nirsdBeeps") >= 1
    assert int(text(driver, "countdown")) <= 6
    save(driver, tmp_path, "patient")
    assert errors(driver) == []
    driver.switch_to.window(operator)
    wait_for(lambda: "extension" in text(driver, "protocol-step"), 5)
    save(driver, tmp_path, "operator")
    assert errors(driver) == []


def _sessions_supported(daemon: DaemonProcess) -> bool:
    try:
        daemon.control().request("session_status")
    except NirsdError as err:
        if "unknown" in str(err):
            return False
        raise
    return True


def test_session_form_starts_a_session_on_the_session_topic(console, daemon, driver, tmp_path):
    if not _sessions_supported(daemon):
        pytest.skip("this daemon answers 'unknown command' to session_status (no sessions yet)")
    open_operator(driver, console)
    ended_epoch(driver)
    with daemon.subscriber(("session", "status")) as sub:
        joined(sub)
        form = driver.find_element(By.ID, "session-form")
        for name, value in {"subject": "P07", "session": "week0", "group": "mckenzie"}.items():
            form.find_element(By.NAME, name).send_keys(value)
        form.find_element(By.NAME, "task").send_keys("lumbar")
        form.find_element(By.CSS_SELECTOR, "select[name=protocol] option[value=lumbar]").click()
        driver.find_element(By.ID, "session-start").click()
        msg = recv_topic(sub, "session")
    assert msg is not None and msg.header["event"] == "start"
    assert (msg.header["subject"], msg.header["session"]) == ("P07", "week0")
    assert msg.header["group"] == "mckenzie" and msg.header["protocol"] == "lumbar"
    wait_for(lambda: text(driver, "session-now").startswith("Running: P07 / week0"), 10)
    assert driver.find_element(By.ID, "session-start").get_attribute("disabled")
    operator = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(console.base + "/patient")
    first = int(wait_for(lambda: text(driver, "countdown"), 10))
    wait_for(lambda: int(text(driver, "countdown") or 99) < first, 5, what="the countdown")
    wait_for(lambda: text(driver, "instruction") == "EXTENSION", 10, what="the exercise")
    save(driver, tmp_path, "patient-session", docs="console-patient.png")
    assert errors(driver) == []
    driver.switch_to.window(operator)
    wait_for(lambda: "extension" in text(driver, "protocol-step"), 5)
    save(driver, tmp_path, "operator-session", docs="console-operator.png")
    driver.find_element(By.ID, "session-stop").click()
    wait_for(lambda: text(driver, "session-now").startswith("No session. The last: P07"), 10)
    assert errors(driver) == []


#: samples (1 s at 20 Hz) the page has shown inside the epoch before it ends
EPOCH_SAMPLES = 20


def newest_shown(driver) -> int:
    """The newest sample seq whose point the page has drawn (-1 before any)."""
    return driver.execute_script(
        "const a = window.nirsdArrivals; return a.length ? a[a.length - 1][0] : -1"
    )


def ended_epoch(driver) -> None:
    """A one-second extension epoch, so that the summary table has something to show."""
    driver.find_element(By.ID, "mark-start-extension").click()
    wait_for(lambda: text(driver, "epoch-open").startswith("Open: extension"), 5)
    opened = newest_shown(driver)
    wait_for(lambda: newest_shown(driver) >= opened + EPOCH_SAMPLES, 10, what="the epoch's data")
    driver.find_element(By.ID, "mark-end-extension").click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#summary tbody tr"), 10)


def test_page_shows_a_daemon_restart_and_resumes(console, daemon, driver, tmp_path):
    open_operator(driver, console)
    first = driver.execute_script("return window.nirsdArrivals.length")
    daemon.stop()
    wait_for(lambda: driver.find_element(By.ID, "outage").is_displayed(), 20, what="the outage")
    assert "The daemon does not answer since" in text(driver, "outage")
    assert text(driver, "daemon-state") == "daemon unreachable"
    assert text(driver, "rate").startswith("No data from the daemon since ")
    assert driver.find_element(By.ID, "mark-start-rest").get_attribute("disabled")
    save(driver, tmp_path, "operator-outage")
    daemon.start()
    wait_for(lambda: not driver.find_element(By.ID, "outage").is_displayed(), 30, what="resumed")
    wait_for(lambda: "restarted 1×" in text(driver, "daemon-state"), 10)
    assert "The daemon restarted at" in text(driver, "rate")
    resumed = driver.execute_script("return window.nirsdArrivals.length")
    wait_for(
        lambda: driver.execute_script("return window.nirsdArrivals.length") > resumed + 5,
        20,
        what="new points after the restart",
    )
    assert resumed >= first
    save(driver, tmp_path, "operator-resumed")
    assert errors(driver) == []
