"""register(): known deformations recovered on synthetic pairs; fallbacks and clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from correlate_helpers import make_pair, tre_px

from metallo._xarray import image_dataarray
from metallo.correlate import get_method, method_names, register
from metallo.errors import ConfigError, RegistrationError, UnknownNameError


@pytest.fixture(scope="module")
def pair():
    return make_pair(0)


@pytest.fixture(scope="module")
def sift_only(pair):
    return register(pair.fixed, pair.moving, method="sift")


@pytest.fixture(scope="module")
def sift_bspline(pair):
    # The block-matching B-spline alone keeps this fast; the full default (blocks + Mattes-MI)
    # is checked against the brief's TRE targets on metallo.synth specimens (test_correlate_synth).
    return register(pair.fixed, pair.moving, method="sift+bspline", grid_um=15.0, deformable="blocks")


def test_method_registry_lists_names():
    assert {"sift", "sift+bspline", "affine", "affine+bspline", "bspline"} <= set(method_names())
    assert get_method("SIFT+BSPLINE").deformable
    with pytest.raises(UnknownNameError, match="sift\\+bspline"):
        register(np.zeros((32, 32)), np.zeros((32, 32)), method="demons")


def test_sift_affine_start(pair, sift_only):
    q = sift_only.quality
    assert q["initial"] == "sift" and q["inliers"] >= 8
    assert q["mi_affine"] > q["mi_before"]
    # Affine alone cannot follow the 1.2 µm (3.4 px) sinusoidal deformation ...
    assert np.median(tre_px(sift_only, pair)) > 1.0


def test_bspline_recovers_known_deformation(pair, sift_only, sift_bspline):
    err = tre_px(sift_bspline, pair)
    assert np.median(err) <= 0.6
    assert np.percentile(err, 95) <= 2.5
    # ... and the B-spline clearly improves on it.
    assert np.median(err) < 0.5 * np.median(tre_px(sift_only, pair))
    assert sift_bspline.quality["mi_after"] > sift_bspline.quality["mi_affine"]
    assert sift_bspline.transform_type == "bspline+affine"


def test_warped_moving_lands_on_fixed(pair, sift_bspline):
    # Truth: a moving-grid checker label carried by the true mapping vs by the registration.
    warped = sift_bspline.warp(pair.moving)
    assert warped.shape == pair.fixed.shape
    assert float(warped.attrs["pixel_size_um"]) == float(pair.fixed.attrs["pixel_size_um"])
    square_um = 8.0
    g = pair.moving
    checker = ((g.y.values[:, None] // square_um + g.x.values[None, :] // square_um) % 2).astype(np.uint8)
    on_fixed = sift_bspline.warp(image_dataarray(checker, pixel_size_um=float(g.attrs["pixel_size_um"])),
                                 interpolation="nearest", fill_value=255).values
    fy, fx = np.meshgrid(warped.y.values, warped.x.values, indexing="ij")
    q = pair.fixed_to_moving_xy(np.stack([fx.ravel(), fy.ravel()], 1))  # true moving (x, y) of each fixed pixel
    extent = np.array([g.x.values[-1], g.y.values[-1]])
    truth = (((q[:, 1] // square_um) + (q[:, 0] // square_um)) % 2).reshape(warped.shape)
    # Judge only pixels well inside the moving field and 1 µm (about 3 fixed pixels) from a
    # checker edge: the registration is good to about 0.6 px, the edges themselves are ambiguous.
    edge = np.minimum(np.abs((q + square_um / 2) % square_um - square_um / 2), square_um).min(axis=1)
    judged = ((edge > 1.0) & np.all((q > 2.0) & (q < extent - 2.0), axis=1)).reshape(warped.shape)
    assert judged.sum() > 10_000
    assert (on_fixed[judged] == truth[judged]).mean() > 0.995
    # The warped intensities are the moving image read at the true positions.
    from scipy import ndimage as ndi

    px = float(g.attrs["pixel_size_um"])
    expected = ndi.map_coordinates(g.values.astype(float), [q[:, 1] / px, q[:, 0] / px], order=1).reshape(warped.shape)
    assert np.corrcoef(warped.values[judged], expected[judged])[0, 1] > 0.95
    # Without the registration (moving pixels taken at the fixed positions) the test fails.
    identity = ndi.map_coordinates(g.values.astype(float), [fy.ravel() / px, fx.ravel() / px], order=1,
                                   cval=np.nan).reshape(warped.shape)
    both = judged & np.isfinite(identity)
    assert np.corrcoef(identity[both], expected[both])[0, 1] < 0.5


def test_landmarks_give_tre_and_landmark_method(pair):
    rng = np.random.default_rng(3)
    moving_yx_um = rng.uniform(15, 65, (12, 2))
    fixed_yx_um = pair.moving_to_fixed_xy(moving_yx_um[:, ::-1])[:, ::-1]
    reg = register(pair.fixed, pair.moving, method="landmarks", landmarks=(moving_yx_um, fixed_yx_um), landmarks_units="um")
    assert reg.quality["initial"] == "landmarks"
    assert reg.quality["tre_px"]["n"] == 12
    # An affine through points of a deformed mapping leaves about the deformation amplitude.
    assert 0.1 < reg.quality["tre_px"]["median"] < 6.0
    with pytest.raises(ConfigError, match="landmarks"):
        register(pair.fixed, pair.moving, method="landmarks")


def test_exact_landmarks_point_out_a_mis_clicked_point(pair, tmp_path):
    # 20 points on the true mapping, one of them clicked 8 µm off: its leave-one-out error
    # (recorded per point for the residual figure) stands out from all the others.
    from metallo.correlate import residual_figure

    rng = np.random.default_rng(5)
    moving_yx_um = rng.uniform(10, 70, (20, 2))
    fixed_yx_um = pair.moving_to_fixed_xy(moving_yx_um[:, ::-1])[:, ::-1]
    fixed_yx_um[7] += (6.0, -5.3)
    reg = register(pair.fixed, pair.moving, method="landmarks+tps", landmarks=(moving_yx_um, fixed_yx_um),
                   landmarks_units="um")
    points = reg.quality["landmark_points"]
    loo = np.asarray(points["loo_px"])
    np.testing.assert_allclose(np.asarray(points["fixed_xy_um"])[:, ::-1], fixed_yx_um)
    assert int(np.argmax(loo)) == 7 and loo[7] > 3 * np.median(np.delete(loo, 7))
    assert residual_figure(reg, pair.fixed, tmp_path / "r.png").stat().st_size > 10_000


def test_fallback_when_no_features():
    # Two smooth blobs: no SIFT matches, but a shift that the fallback start recovers.
    yy, xx = np.mgrid[:96, :96]
    fixed = np.exp(-((yy - 44) ** 2 + (xx - 50) ** 2) / 300.0) + 0.5 * np.exp(-((yy - 70) ** 2 + (xx - 30) ** 2) / 80.0)
    moving = np.exp(-((yy - 48) ** 2 + (xx - 47) ** 2) / 300.0) + 0.5 * np.exp(-((yy - 74) ** 2 + (xx - 27) ** 2) / 80.0)
    with pytest.warns(UserWarning, match="falling back"):
        reg = register(fixed, moving, method="sift", min_inliers=50)
    assert reg.quality["initial"] in ("outline", "search")
    np.testing.assert_allclose(reg.fixed_to_moving(np.array([[44.0, 50.0]])), [[48.0, 47.0]], atol=1.0)
    with pytest.warns(UserWarning, match="intensity"):
        reg = register(fixed, moving, method="sift", min_inliers=50, fallback="intensity")
    assert reg.quality["initial"] == "intensity"
    np.testing.assert_allclose(reg.fixed_to_moving(np.array([[44.0, 50.0]])), [[48.0, 47.0]], atol=1.0)


def test_intensity_affine_method_recovers_shift():
    from scipy import ndimage as ndi

    rng = np.random.default_rng(12)
    base = ndi.gaussian_filter(rng.random((110, 110)), 3.0)
    fixed, moving = base[5:101, 5:101], base[9:105, 2:98]  # moving = fixed shifted by (+4, -3) px
    reg = register(fixed, moving, method="affine")
    assert reg.quality["initial"] == "intensity"
    np.testing.assert_allclose(reg.fixed_to_moving(np.array([[50.0, 50.0]])), [[46.0, 53.0]], atol=0.5)


def test_plain_arrays_register_in_pixels(pair):
    reg = register(pair.fixed.values, pair.fixed.values[10:, 6:], method="sift")
    np.testing.assert_allclose(reg.transform_points(np.array([[0.0, 0.0]])), [[10.0, 6.0]], atol=0.2)


def test_errors_say_what_failed():
    rng = np.random.default_rng(0)
    img = rng.random((64, 64))
    with pytest.raises(RegistrationError, match="NaN"):
        register(np.full((64, 64), np.nan), img, method="sift")
    with pytest.raises(RegistrationError, match="constant"):
        register(np.ones((64, 64)), img, method="sift")
    with pytest.raises(RegistrationError, match="16 x 16"):
        register(np.ones((8, 8)), img)
    # A stack of 5 images is no colour image of 64 channels (it had been read as one, 5 x 64 px).
    with pytest.raises(RegistrationError, match=r"shape \(5, 64, 64\).*at most 4 channels.*one 2-D image"):
        register(np.stack([img] * 5), img)
    far = image_dataarray(img, pixel_size_um=1.0, origin_um=(5000.0, 5000.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RegistrationError, match="overlap"):
            register(image_dataarray(img, pixel_size_um=1.0), far, method="bspline")
    with pytest.raises(RegistrationError, match="pixel size"):
        register(image_dataarray(img, pixel_size_um=1.0), img)


def test_search_start_finds_small_rotated_inverted_field():
    # A fine "SEM" field (3x finer pixels, inverted contrast, rotated 4 deg) inside a coarse map:
    # SIFT gets nothing usable, there is no specimen outline, the masked-NCC search finds it.
    from scipy import ndimage as ndi

    rng = np.random.default_rng(11)
    coarse = ndi.gaussian_filter(rng.random((120, 120)), 2.0)
    big = image_dataarray(coarse, pixel_size_um=1.0)
    a = np.deg2rad(4.0)
    matrix = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    offset = np.array([40.0, 30.0])  # fixed (x, y) µm -> moving (x, y) µm
    fy, fx = np.mgrid[:150, :150] / 3.0
    pts = np.stack([fx.ravel(), fy.ravel()], 1) @ matrix.T + offset
    fine = ndi.map_coordinates(coarse, [pts[:, 1], pts[:, 0]], order=3).reshape(150, 150)
    small = image_dataarray(1.0 - fine, pixel_size_um=1.0 / 3.0)
    with pytest.warns(UserWarning, match="falling back"):
        reg = register(small, big, method="sift", min_inliers=1000)
    assert reg.quality["initial"] == "search"
    assert reg.quality["search"]["inverted_moving"]
    probe = np.array([[10.0, 10.0], [40.0, 20.0]])  # fixed (y, x) µm
    expected = (probe[:, ::-1] @ matrix.T + offset)[:, ::-1]
    # The coarse search is good to about one coarse pixel (2-deg angle steps).
    np.testing.assert_allclose(reg.fixed_to_moving(probe), expected, atol=1.5)


def test_inverse_consistency_reported(pair):
    reg = register(
        pair.fixed, pair.moving, method="sift+bspline", deformable="blocks", grid_um=15.0, inverse_consistency=True
    )
    ic = reg.quality["inverse_consistency_px"]
    # Two independent fits, forward and backward, each ~0.5 px off the truth: round trip ~1 px.
    assert 0.0 < ic["median"] < 1.5
    assert ic["p95"] >= ic["median"]


def test_inverse_consistency_runs_the_same_method_with_the_same_options(pair, monkeypatch):
    """Issue 14 item 6: the reverse registration gets the caller's options whole, roles swapped."""
    from metallo.correlate import _register

    calls = []
    original = _register.register

    def spy(fixed, moving, **options):
        calls.append(options)
        return original(fixed, moving, **options)

    monkeypatch.setattr(_register, "register", spy)
    mask = np.ones(pair.fixed.shape, bool)
    moving_mask = np.ones(pair.moving.shape, bool)
    moving_yx = np.array([[20.0, 20.0], [20.0, 100.0], [100.0, 20.0], [90.0, 90.0]])
    fixed_yx = moving_yx + 1.0
    options = dict(
        method="sift+bspline", deformable="blocks", grid_um=15.0, block_px=24, highpass_um=20.0, fallback="search",
        mask=mask, moving_mask=moving_mask, landmarks=(moving_yx, fixed_yx), landmarks_units="um", seed=3, ratio=0.75,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spy(pair.fixed, pair.moving, inverse_consistency=True, **options)
    assert len(calls) == 2
    back = calls[1]
    assert back["inverse_consistency"] is False and back["progress"] is None
    assert back["mask"] is moving_mask and back["moving_mask"] is mask
    # Landmarks swap roles (the reverse call gets them in µm, the same points).
    np.testing.assert_allclose(back["landmarks"][0], fixed_yx)
    np.testing.assert_allclose(back["landmarks"][1], moving_yx)
    for key in ("method", "deformable", "grid_um", "block_px", "highpass_um", "fallback", "seed", "ratio", "landmarks_units"):
        assert back[key] == options[key], key
    # Every other option of the signature travels unchanged.
    import inspect

    for name, param in inspect.signature(original).parameters.items():
        if name not in ("fixed", "moving", "mask", "moving_mask", "landmarks", "inverse_consistency", "progress") and name not in options:
            assert back[name] == param.default, name


@pytest.mark.parametrize("corner, n", [((50, 50), 100), ((20, 100), 80)])
def test_an_ebsd_map_on_a_small_part_of_the_micrograph_is_registered_and_not_failed(corner, n):
    # The usual lab case: the EBSD map covers a few per cent of the LOM field, in its own
    # coordinates (starting at 0). The map is found (masked-NCC search, then control points),
    # and the overlap is judged on the smaller field: it had been flagged failed because the
    # fields "overlap on 14 % of the fixed image" while the error was 0.27 px.
    from metallo.synth import make_specimen

    spec = make_specimen(0)
    y0, x0 = corner
    sub = spec.ebsd["iq"].isel(y=slice(y0, y0 + n), x=slice(x0, x0 + n))
    oy, ox = float(sub.y[0]), float(sub.x[0])
    moved = sub.assign_coords(y=sub.y - oy, x=sub.x - ox)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = register(spec.lom, moved)
    ys, xs = np.meshgrid(moved.y.values[::4], moved.x.values[::4], indexing="ij")
    points = np.stack([ys.ravel(), xs.ravel()], 1)
    err = np.linalg.norm(reg.transform_points(points) - spec.ebsd_to_lom(points + [oy, ox]), axis=1) / 0.3
    assert np.median(err) < 0.5 and np.percentile(err, 95) < 1.5  # LOM pixels (0.3 µm)
    q = reg.quality
    assert q["overlap_fraction"] < 0.2 and q["overlap_fraction_of_moving"] > 0.95
    assert not q["failed"] and not any("registration failed" in str(w.message) for w in caught)


def test_masked_ncc_finds_a_cut_out_template_and_matches_brute_force():
    """Known answer: a template cut from the image at a known place correlates 1.0 there and
    nowhere better; every value equals the masked NCC over the overlapping valid pixels; a second
    template of the same size (the cached image spectra) gives what a fresh instance gives."""
    from metallo.correlate._register import _MaskedNCC

    rng = np.random.default_rng(5)
    image = rng.normal(size=(60, 70))
    image_mask = rng.random(image.shape) > 0.15
    top, left, h, w = 12, 23, 21, 26
    template = image[top : top + h, left : left + w].copy()
    template_mask = image_mask[top : top + h, left : left + w] & (rng.random((h, w)) > 0.1)
    correlate = _MaskedNCC(image, image_mask)
    ncc, n = correlate(template, template_mask)
    assert ncc.shape == (60 + h - 1, 70 + w - 1)
    k = (top + h - 1, left + w - 1)  # index k puts template pixel p on image pixel p + k - (h - 1, w - 1)
    assert ncc[k] == pytest.approx(1.0, abs=1e-9)
    assert np.unravel_index(int(np.argmax(np.where(n >= 0.5 * template_mask.sum(), ncc, -np.inf))), ncc.shape) == k
    for ky, kx in [(k[0] - 3, k[1] + 5), (30, 40), (h - 1, w - 1), (50, 20)]:
        oy, ox = ky - (h - 1), kx - (w - 1)  # image pixel of template pixel (0, 0)
        ys, xs = np.mgrid[0:h, 0:w]
        iy, ix = ys + oy, xs + ox
        inside = (iy >= 0) & (iy < 60) & (ix >= 0) & (ix < 70)
        both = inside & template_mask
        both[inside] &= image_mask[iy[inside], ix[inside]]
        a, b = image[iy[both], ix[both]], template[both]
        assert n[ky, kx] == both.sum()
        want = np.corrcoef(a, b)[0, 1]
        assert ncc[ky, kx] == pytest.approx(want, abs=1e-9)
    other = rng.normal(size=(h, w))
    other_mask = rng.random((h, w)) > 0.2
    again = correlate(other, other_mask)
    fresh = _MaskedNCC(image, image_mask)(other, other_mask)
    np.testing.assert_array_equal(again[0], fresh[0])
    np.testing.assert_array_equal(again[1], fresh[1])
