"""A driver from another package, found through the ``nirsd.drivers`` entry-point group
(the worked example of docs/drivers.md, installed as a real distribution on sys.path)."""

from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pytest

from nirsd.core.errors import ConfigError
from nirsd.drivers import registry
from nirsd.drivers.base import DeviceSettings

PLUGIN = textwrap.dedent('''
    """A probe that prints ``red ir`` per line: a whitespace-delimited csv preset."""
    from dataclasses import replace

    from nirsd.drivers.delimited import DelimitedDriver

    class RedIrDriver(DelimitedDriver):
        name = "redir"

        def __init__(self, settings):
            options = {"delimiter": "whitespace", "columns": ["ch0:660", "ch0:880"],
                       **settings.options}
            super().__init__(replace(settings, options=options))
''')


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "redir_driver.py").write_text(PLUGIN)
    dist = tmp_path / "redir_driver-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: redir-driver\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[nirsd.drivers]\nredir = redir_driver:RedIrDriver\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("redir_driver", None)


def test_entry_point_driver_is_found_and_works(plugin):
    assert registry.available()["redir"] == "redir_driver:RedIrDriver"
    cls = registry.get("redir")
    d = cls(DeviceSettings("/dev/null", wavelengths_nm=(660, 880), rate_hz=10.0))
    samples = d.make_parser().feed(b"cut\n100 200\n  300\t400\n")
    assert [s.intensity.tolist() for s in samples] == [[[100.0, 200.0]], [[300.0, 400.0]]]
    assert np.isclose(d.default_info().rate_hz, 10.0)


def test_unknown_driver_names_the_key():
    with pytest.raises(ConfigError) as err:
        registry.get("no-such-driver")
    assert err.value.key == "device.driver"
