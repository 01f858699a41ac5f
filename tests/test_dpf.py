"""DPF presets and resolution of the optics.dpf config value."""

from __future__ import annotations

import numpy as np
import pytest

from nirsd.core.errors import ConfigError
from nirsd.daemon.dpf import PRESETS, resolve_dpf, scholkmann_wolf

WL = [760, 850]


@pytest.mark.parametrize(
    "name,value", [("muscle-forearm", 4.16), ("muscle-calf", 5.51), ("head-adult", 6.26)]
)
def test_constant_presets(name, value):
    np.testing.assert_array_equal(resolve_dpf(name, WL), [value, value])
    assert "Duncan" in PRESETS[name].source


def test_scholkmann_wolf_age_30():
    got = resolve_dpf("head-age", WL, age_years=30)
    np.testing.assert_allclose(got, [6.297, 5.234], atol=5e-4)
    np.testing.assert_array_equal(got, scholkmann_wolf(WL, 30))
    assert "Scholkmann" in PRESETS["head-age"].source


def test_number_table_and_list():
    np.testing.assert_array_equal(resolve_dpf(6, WL), [6.0, 6.0])
    np.testing.assert_array_equal(resolve_dpf(5.5, [700, 800, 900]), [5.5] * 3)
    np.testing.assert_array_equal(resolve_dpf({"760": 6.1, 850: 5.9}, WL), [6.1, 5.9])
    np.testing.assert_array_equal(resolve_dpf({850.0: 5.9, 760.0: 6.1}, WL), [6.1, 5.9])
    np.testing.assert_array_equal(resolve_dpf([6.1, 5.9], WL), [6.1, 5.9])
    assert resolve_dpf([6.1, 5.9], WL).dtype == np.float64


@pytest.mark.parametrize(
    "spec,kwargs,match",
    [
        (
            "brain",
            {},
            "unknown DPF preset 'brain'; valid presets: head-adult, head-age, "
            "muscle-calf, muscle-forearm",
        ),
        ("head-age", {}, "age"),
        ("head-age", {"age_years": -3}, "age"),
        (0, {}, "positive"),
        (-6.0, {}, "positive"),
        (float("nan"), {}, "positive"),
        ([6.0, 0.0], {}, "positive"),
        ({760: 6.0, 850: -1.0}, {}, "positive"),
        ([6.0], {}, "1 values for 2 wavelengths"),
        ([6.0, "x"], {}, "numbers"),
        ({760: 6.0}, {}, "missing 850"),
        ({760: 6.0, 850: 6.0, 900: 5.0}, {}, "not configured 900"),
        ({"red": 6.0, 850: 6.0}, {}, "not a wavelength"),
        ({760: "six", 850: 6.0}, {}, "must be a number"),
        (True, {}, "must be a number"),
        (None, {}, "must be a number"),
    ],
)
def test_errors(spec, kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        resolve_dpf(spec, WL, **kwargs)
    assert info.value.key == "optics.dpf"
