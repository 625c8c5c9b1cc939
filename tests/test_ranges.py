"""Tests for tfadv.ranges: pixel-level units, uint8 mapping, image and flag validation."""

import numpy as np
import pytest

from tfadv import ranges

ZERO_ONE = ranges.get_range("[0,1]")
PM_ONE = ranges.get_range("[-1,1]")


# ----------------------------------------------------------------------------------- units


def test_range_bounds_and_width():
    assert (ZERO_ONE.low, ZERO_ONE.high, ZERO_ONE.width) == (0.0, 1.0, 1.0)
    assert (PM_ONE.low, PM_ONE.high, PM_ONE.width) == (-1.0, 1.0, 2.0)
    assert str(ZERO_ONE) == "[0,1]" and str(PM_ONE) == "[-1,1]"


def test_from_pixels_eight_pixels():
    assert ZERO_ONE.from_pixels(8) == pytest.approx(8 / 255, rel=1e-12)
    assert PM_ONE.from_pixels(8) == pytest.approx(16 / 255, rel=1e-12)
    assert ZERO_ONE.from_pixels(2) == pytest.approx(2 / 255, rel=1e-12)
    assert ZERO_ONE.from_pixels(0) == 0.0
    assert ZERO_ONE.from_pixels(255) == pytest.approx(1.0)
    assert PM_ONE.from_pixels(255) == pytest.approx(2.0)


def test_from_pixels_mnist_budget():
    assert ZERO_ONE.from_pixels(76.5) == pytest.approx(0.3, rel=1e-12)
    assert PM_ONE.from_pixels(76.5) == pytest.approx(0.6, rel=1e-12)


def test_to_pixels():
    assert ZERO_ONE.to_pixels(8 / 255) == pytest.approx(8.0)
    assert PM_ONE.to_pixels(16 / 255) == pytest.approx(8.0)
    assert ZERO_ONE.to_pixels(0.3) == pytest.approx(76.5)
    assert PM_ONE.to_pixels(0.3) == pytest.approx(38.25)


@pytest.mark.parametrize("rng", [ZERO_ONE, PM_ONE], ids=str)
@pytest.mark.parametrize("pixels", [0.0, 0.765, 1.0, 2.0, 8.0, 16.0, 76.5, 255.0])
def test_pixels_round_trip(rng, pixels):
    assert rng.to_pixels(rng.from_pixels(pixels)) == pytest.approx(pixels, rel=1e-12, abs=1e-12)
    units = pixels / 255.0 * rng.width
    assert rng.from_pixels(rng.to_pixels(units)) == pytest.approx(units, rel=1e-12, abs=1e-12)


# ----------------------------------------------------------------------------------- uint8


UINT8_VALUES = np.array([0, 1, 127, 128, 255], dtype=np.uint8)


def test_from_uint8_pm_one_is_bat_preprocessing():
    out = PM_ONE.from_uint8(UINT8_VALUES).numpy()
    assert out.dtype == np.float32
    x = UINT8_VALUES.astype(np.float32)
    expected = np.float32(2.0) * (x / np.float32(255.0) - np.float32(0.5))
    np.testing.assert_array_equal(out, expected)
    # Endpoints map exactly onto the range bounds.
    assert out[0] == -1.0 and out[-1] == 1.0
    # 127 and 128 sit symmetrically around 0.
    np.testing.assert_allclose(out[2], -out[3], rtol=0, atol=1e-7)
    np.testing.assert_allclose(out[2], -1.0 / 255.0, rtol=1e-6)


def test_from_uint8_zero_one():
    out = ZERO_ONE.from_uint8(UINT8_VALUES).numpy()
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, UINT8_VALUES.astype(np.float32) / np.float32(255.0))
    assert out[0] == 0.0 and out[-1] == 1.0


def test_from_uint8_keeps_shape_and_accepts_float_input():
    images = np.arange(24, dtype=np.float64).reshape(2, 3, 4) * 10
    out = ZERO_ONE.from_uint8(images).numpy()
    assert out.shape == (2, 3, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, images / 255.0, rtol=1e-6)


# ----------------------------------------------------------------------------------- check_images


def test_check_images_accepts_in_range():
    ZERO_ONE.check_images(np.array([0.0, 0.5, 1.0], np.float32))
    PM_ONE.check_images(np.array([-1.0, 0.0, 1.0], np.float32))
    ZERO_ONE.check_images(np.zeros((0, 8, 8, 1), np.float32))  # empty batches pass
    ZERO_ONE.check_images(np.array([1.0 + 5e-6, -5e-6], np.float32))  # within the tolerance


@pytest.mark.parametrize("rng,values,lo,hi", [
    (ZERO_ONE, [0.0, 0.5, 1.5], "0", "1.5"),
    (ZERO_ONE, [-0.25, 0.5, 1.0], "-0.25", "1"),
    (ZERO_ONE, [0.0, 255.0], "0", "255"),           # uint8 values fed unscaled
    (PM_ONE, [-1.0, 0.0, 1.1], "-1", "1.1"),
    (PM_ONE, [-2.0, 0.0], "-2", "0"),
], ids=["above", "below", "uint8", "pm_above", "pm_below"])
def test_check_images_out_of_range(rng, values, lo, hi):
    with pytest.raises(ValueError, match="Received") as e:
        rng.check_images(np.array(values, np.float32))
    msg = str(e.value)
    assert f"min={lo}" in msg and f"max={hi}" in msg
    assert rng.name in msg


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_images_nan_inf(bad):
    with pytest.raises(ValueError, match="Received") as e:
        ZERO_ONE.check_images(np.array([0.2, bad, 0.4], np.float32))
    assert "NaN or Inf" in str(e.value)
    assert "min=" in str(e.value) and "max=" in str(e.value)


def test_check_images_what_in_message():
    with pytest.raises(ValueError, match="adversarial images"):
        ZERO_ONE.check_images(np.array([2.0]), what="adversarial images")


# ----------------------------------------------------------------------------------- flags


@pytest.mark.parametrize("value", [0, 1, 2, 8, 16, 76.5, 255, "8"])
def test_check_pixel_size_accepts(value):
    out = ranges.check_pixel_size(value)
    assert isinstance(out, float) and out == float(value)


def test_check_pixel_size_rejects_fraction_of_range():
    with pytest.raises(ValueError, match="Received") as e:
        ranges.check_pixel_size(0.3)
    assert "--eps=76.5" in str(e.value)
    with pytest.raises(ValueError, match="--step_size=7.905"):
        ranges.check_pixel_size(0.031, name="step_size")


def test_check_pixel_size_subpixel_allowed():
    assert ranges.check_pixel_size(0.765, allow_subpixel=True) == 0.765
    assert ranges.check_pixel_size(0.3, name="step_size", allow_subpixel=True) == 0.3


@pytest.mark.parametrize("bad", [-1, -0.5, 255.5, 300, float("nan"), float("inf"), "abc", None])
def test_check_pixel_size_rejects(bad):
    with pytest.raises(ValueError, match="Received"):
        ranges.check_pixel_size(bad)


def test_check_pixel_size_zero():
    assert ranges.check_pixel_size(0) == 0.0
    with pytest.raises(ValueError, match="positive.*Received"):
        ranges.check_pixel_size(0, allow_zero=False)


# ----------------------------------------------------------------------------------- get_range


@pytest.mark.parametrize("name", ["[0,1]", "[0, 1]", " [0,1] ", "0,1", "01", "zero_one"])
def test_get_range_zero_one_aliases(name):
    assert ranges.get_range(name) is ranges.RANGES["[0,1]"]


@pytest.mark.parametrize("name", ["[-1,1]", "[-1, 1]", "-1,1", "pm1", "minus_one_one"])
def test_get_range_pm_one_aliases(name):
    assert ranges.get_range(name) is ranges.RANGES["[-1,1]"]


def test_get_range_passes_range_objects_through():
    assert ranges.get_range(PM_ONE) is PM_ONE


@pytest.mark.parametrize("name", ["[0,255]", "0-1", "", "imagenet"])
def test_get_range_unknown(name):
    with pytest.raises(ValueError, match="Received") as e:
        ranges.get_range(name)
    assert "[0,1]" in str(e.value) and "[-1,1]" in str(e.value)


def test_get_range_wrong_type():
    with pytest.raises(TypeError, match="Received"):
        ranges.get_range(1.0)
