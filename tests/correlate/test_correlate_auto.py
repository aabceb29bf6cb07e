"""Automatic control points, thin-plate splines and the failure verdict: known answers and real pairs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from metallo import names
from metallo.correlate import register
from metallo.correlate._evaluate import (
    load_point_pair,
    point_baselines,
    residual_calibration,
    tre,
    tre_stats,
)
from metallo.correlate._tps import fit_tps, fit_tps_cv
from metallo.correlate._transform import Grid, Registration

CONI = "correlative_ebsd_bse_coni/Slice381_"
TFS = "correlative_ebsd_bse_more/Slice8_TFS_"


def coni_pair(shared_file):
    return load_point_pair(
        shared_file(CONI + "bse.tif"), shared_file(CONI + "ebsd.tif"),
        shared_file(CONI + "ctr_pts_bse.txt"), shared_file(CONI + "ctr_pts_ebsd.txt"), name="Slice381",
    )


def tfs_pair(shared_file):
    return load_point_pair(
        shared_file(TFS + "bse_resized.png"), shared_file(TFS + "ebsd.png"),
        shared_file(TFS + "ctr_pts_bse_resized.txt"), shared_file(TFS + "ctr_pts_ebsd.txt"), name="Slice8_TFS",
    )


def _stretched_matches(n=150, outliers=0.3, seed=1):
    """Matches under a known second-order map (a section stretched towards its lower edge)."""
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 500, (n, 2))

    def true(p):
        x, y = p[:, 0] / 500, p[:, 1] / 500
        return np.c_[p[:, 0] + 3 + 5 * x * y, p[:, 1] - 2 + 30 * y * y]

    dst = true(src)
    bad = rng.random(n) < outliers
    dst[bad] += rng.uniform(20, 60, (bad.sum(), 2)) * rng.choice([-1, 1], (bad.sum(), 2))
    return src, dst, bad


def test_quadratic_consensus_keeps_a_stretched_edge_the_affine_rejects():
    from metallo.correlate._auto import _global_inliers, _ransac_affine

    src, dst, bad = _stretched_matches()
    _, affine = _ransac_affine(src, dst, 3.0)
    inl, model = _global_inliers(src, dst, 3.0)
    assert model == "quadratic"
    # Exactly the true matches, the lower rows included; the affine loses part of them there.
    np.testing.assert_array_equal(inl, ~bad)
    lost = ~bad & ~affine
    assert lost.sum() >= 10 and np.abs(src[lost, 1] - 250).mean() > 150  # the top and bottom rows


def test_quadratic_consensus_needs_enough_affine_inliers():
    from metallo.correlate._auto import _QUADRATIC_MIN_INLIERS, _global_inliers

    # Too few matches for a 12-parameter model: the affine's consensus, whatever it holds.
    src, dst, _ = _stretched_matches(n=_QUADRATIC_MIN_INLIERS - 5, outliers=0.0)
    assert _global_inliers(src, dst, 3.0)[1] == "affine"
    # A purely affine map: either model finds exactly the true matches.
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 500, (120, 2))
    dst = src @ np.array([[1.02, 0.01], [-0.02, 0.98]]) + 4.0
    dst[:30] += rng.uniform(20, 60, (30, 2))
    inl, _ = _global_inliers(src, dst, 3.0)
    assert inl[30:].all() and not inl[:30].any()


def test_a_quadratic_consensus_that_drops_affine_inliers_is_not_used(monkeypatch):
    import metallo.correlate._auto as auto

    src, dst, bad = _stretched_matches(outliers=0.2)
    _, affine = auto._ransac_affine(src, dst, 3.0)
    # A second-order consensus on other matches (a tenth of the affine's inliers missing).
    other = affine.copy()
    other[np.flatnonzero(affine)[:: 10]] = False
    monkeypatch.setattr(auto, "_ransac_quadratic", lambda *a, **k: other | bad)
    inl, model = auto._global_inliers(src, dst, 3.0)
    assert model == "affine"
    np.testing.assert_array_equal(inl, affine)


@pytest.mark.parametrize(("block", "side"), [(48, 70), (26, 40), (48, 116)])
def test_block_ncc_map_equals_opencv_on_short_searches(block, side):
    """The padded correlation gives OpenCV's normalised cross-correlation, shift for shift."""
    import cv2
    from scipy import ndimage as ndi

    from metallo.correlate._auto import _ncc_map

    rng = np.random.default_rng(block + side)
    region = ndi.gaussian_filter(rng.normal(size=(side, side + 3)), 2).astype(np.float32)
    tpl = region[5 : 5 + block, 7 : 7 + block] + rng.normal(0, 0.01, (block, block)).astype(np.float32)
    expected = cv2.matchTemplate(region, tpl, cv2.TM_CCOEFF_NORMED)
    got = _ncc_map(region, tpl)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.unravel_index(int(np.argmax(got)), got.shape) == (5, 7)


def test_tps_closed_form_leave_one_out_equals_refitting():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 50, (25, 2))
    d = np.stack([np.sin(p[:, 1] / 9), np.cos(p[:, 0] / 7)], 1) + rng.normal(0, 0.05, p.shape)
    for smoothing in (0.0, 1e-3):
        fit = fit_tps(p, d, smoothing=smoothing)
        brute = []
        for i in range(len(p)):
            keep = np.arange(len(p)) != i
            other = fit_tps(p[keep], d[keep], smoothing=smoothing, scale=fit.step.scale)
            brute.append(np.linalg.norm(other.step.displacement(p[i : i + 1])[0] - d[i]))
        np.testing.assert_allclose(fit.loo_error, brute, rtol=1e-6, atol=1e-9)
    # Exact spline: passes through every point.
    np.testing.assert_allclose(fit_tps(p, d).step.displacement(p), d, atol=1e-8)


def test_tps_cv_smooths_noise_and_keeps_fixed_points_exact():
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 100, (80, 2))
    truth = 0.03 * p[:, ::-1]
    noisy = truth + rng.normal(0, 0.5, p.shape)
    exact = np.zeros(80, bool)
    exact[:5] = True
    fit = fit_tps_cv(p, noisy, fixed_points=exact)
    assert fit.smoothing > 0
    np.testing.assert_allclose(fit.step.displacement(p[:5]), noisy[:5], atol=1e-6)
    # The smoothed spline is closer to the truth than the noisy points are.
    err = np.linalg.norm(fit.step.displacement(p[5:]) - truth[5:], axis=1)
    assert np.median(err) < 0.5 * np.median(np.linalg.norm(noisy[5:] - truth[5:], axis=1))


def test_tps_cv_smoothing_path_equals_one_solve_per_value():
    """The eigendecomposition path gives the spline and leave-one-out errors of a solve per smoothing."""
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 100, (120, 2))
    d = np.stack([np.sin(p[:, 1] / 15), 0.02 * p[:, 0]], 1) + rng.normal(0, 0.3, p.shape)
    for smoothing in (0.0, 1e-4, 0.3):
        cv = fit_tps_cv(p, d, smoothings=np.array([smoothing]))
        one = fit_tps(p, d, smoothing=smoothing, scale=cv.step.scale)
        np.testing.assert_allclose(cv.loo_error, one.loo_error, rtol=1e-7, atol=1e-10)
        q = rng.uniform(-20, 120, (200, 2))
        np.testing.assert_allclose(cv.step.displacement(q), one.step.displacement(q), atol=1e-9)


def test_tile_held_out_error_sees_a_matching_error_its_neighbours_share():
    """A patch of matches off by 3 µm together (overlapping blocks share their pixels and so their error).

    Left out one at a time, each patch point is predicted by its equally wrong neighbours: the
    leave-one-out error (0.86 µm) hides the 3 µm. Left out with its whole tile, it is predicted
    from the smooth field around: 3.2 µm, the known offset (plus the 0.2 µm match noise).
    """
    from metallo.correlate._auto import tile_held_out_errors

    g = np.arange(0, 100, 4.0) + 2
    p = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    rng = np.random.default_rng(0)
    d = np.c_[0.01 * p[:, 0] + 0.005 * p[:, 1], -0.01 * p[:, 0]] + rng.normal(0, 0.2, p.shape)
    patch = (p[:, 0] >= 40) & (p[:, 0] < 60) & (p[:, 1] >= 40) & (p[:, 1] < 60)  # exactly one 20 µm tile
    d[patch, 0] += 3.0
    fit = fit_tps_cv(p, d)
    held = tile_held_out_errors(p, d, len(p), 20.0, smoothing=np.full(len(p), fit.smoothing), scale=fit.step.scale)
    assert np.median(fit.loo_error[patch]) < 1.2
    assert 2.6 < np.median(held[patch]) < 3.5
    far = ~patch & ((np.abs(p[:, 0] - 50) > 30) | (np.abs(p[:, 1] - 50) > 30))
    assert np.median(held[far]) < 0.4 and np.isfinite(held).all()
    # Points after the first n (landmarks, anchors) are never left out, and get no error.
    assert tile_held_out_errors(p, d, 100, 20.0, smoothing=np.full(len(p), fit.smoothing), scale=fit.step.scale).shape == (100,)


def test_residual_calibration_reads_the_map_at_the_points():
    """A map that says 2 px everywhere against points off by a known 1 px: TRE / map 0.5."""
    from metallo.correlate._transform import AffineStep
    from metallo.errors import RegistrationError

    grid = Grid((40, 60), (1.0, 1.0))
    reg = Registration([AffineStep(np.eye(2), np.array([1.0, 0.0]))], fixed_grid=grid, moving_grid=grid)
    fixed_yx = np.array([[10.0, 10.0], [20.0, 30.0], [30.0, 50.0], [15.0, 40.0]])
    with pytest.raises(RegistrationError, match="no residual map"):
        residual_calibration(reg, fixed_yx, fixed_yx)
    coarse = Grid((4, 6), (10.0, 10.0), (4.5, 4.5))
    reg.quality["residual_map_px"] = {"values": np.full((4, 6), 2.0), "grid": coarse.to_dict()}
    cal = residual_calibration(reg, fixed_yx, fixed_yx)  # the moving points sit 1 px from where reg puts them
    assert cal["points"] == 4 and cal["map_median_px"] == 2.0
    assert cal["tre_median_px"] == pytest.approx(1.0) and cal["tre_over_map"] == pytest.approx(0.5)


def test_block_matches_of_unrelated_images_are_as_distinctive_as_chance():
    """The decoy measure: 20x chance (its ceiling) for the same texture, about 1x for an unrelated one."""
    from scipy import ndimage as ndi

    from metallo.correlate._auto import _distinct_over_chance, _match, structure_image

    s, n, b = 12, 240, 24
    same, unrelated = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        ok_big = np.ones((n + 2 * s, n + 2 * s), bool)
        big = structure_image(ndi.gaussian_filter(rng.random(ok_big.shape), 2), ok_big)
        fixed, ok = big[s:-s, s:-s], np.ones((n, n), bool)  # the moving field is the fixed one padded by the search
        other = structure_image(ndi.gaussian_filter(rng.random(ok_big.shape), 2), ok_big)
        for moving, out in ((big, same), (other, unrelated)):
            _, _, peak, gap = _match(fixed, moving, ok, ok_big, block=b, search=s, stride=b // 2)
            out.append(_distinct_over_chance(fixed, moving, ok, ok_big, peak, gap, block=b, search=s, stride=b // 2))
    assert min(same) >= 15
    assert max(unrelated) < 2.0 and 0.6 < np.mean(unrelated) < 1.6


def test_spline_extrapolates_the_points_affine_and_keeps_the_start_in_holes():
    """Anchors outside the points' hull follow the affine through the points; inside a hole, the start.

    Known mapping: the points follow ``true`` (an affine); the start is off by a 6 µm shift plus
    a 1 % scale. The points sit on a ring in the middle of a 200 µm field, so the field's
    corners lie outside their hull and the ring's centre in a hole.
    """
    from metallo.correlate._auto import _anchors, _inside_hull, _lstsq_affine, _SplineFit
    from metallo.correlate._transform import AffineStep

    true = AffineStep(np.array([[1.02, 0.01], [-0.015, 0.99]]), np.array([3.0, -2.0]))
    start = AffineStep(true.matrix * 1.01, true.offset + np.array([0.0, 6.0]))
    angle = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    ring = np.stack([100 + 45 * np.cos(angle), 100 + 45 * np.sin(angle)], 1)
    p = np.vstack([ring, ring * 0.9 + 10])  # two rings: the inner one at radius 40.5
    q = true.apply(p)
    grid = Grid((201, 201), (1.0, 1.0))
    keep = np.ones(len(p), bool)
    none = np.zeros((0, 2))
    affine = _lstsq_affine(p, q)
    spline = _SplineFit(p, q, keep, (none, none), affine, start, px=1.0)
    anchors = _anchors(grid, p, none, spacing=10.0)
    centre = np.array([[100.0, 100.0]])
    corners = np.array([[0.0, 0.0], [200.0, 0.0], [0.0, 200.0], [200.0, 200.0]])
    assert _inside_hull(p, centre).all() and not _inside_hull(p, corners).any()
    assert not _inside_hull(p[:2], centre).any() and not _inside_hull(np.array([[0.0, 0], [1, 1], [2, 2]]), centre).any()
    fit, _ = spline.fit(anchors)
    mapped = affine.apply(corners + fit.step.displacement(corners))
    # Outside the hull: the points' affine, not the start (which is 6-8 µm off there).
    np.testing.assert_allclose(mapped, true.apply(corners), atol=0.05)
    assert (np.linalg.norm(start.apply(corners) - true.apply(corners), axis=1) > 5).all()
    # In the hole the anchors hold the start: the spline moves towards it (~6 µm from the truth).
    at = affine.apply(centre + fit.step.displacement(centre))
    assert np.linalg.norm(at - start.apply(centre)) < 0.5 * np.linalg.norm(start.apply(centre) - true.apply(centre))
    # Pinned nodes hold the start wherever they are, outside the hull too.
    pinned, _ = spline.fit(anchors, pinned_xy=corners)
    np.testing.assert_allclose(affine.apply(corners + pinned.step.displacement(corners)), start.apply(corners), atol=0.05)


def test_reverse_matches_are_checked_in_the_same_axes_as_the_block_matches():
    """Known answer: the moving texture is the fixed one shifted 4 px in x.

    Reverse matches (found the other way round) that carry the same 4 px in x agree with the
    block matches and are kept; ones that carry -4 px are dropped. While the block matches'
    offsets were compared in (row, column) against the reverse ones' (x, y), all 40 good
    reverse matches were dropped.
    """
    from scipy import ndimage as ndi

    from metallo.correlate._auto import auto_points
    from metallo.correlate._transform import AffineStep

    rng = np.random.default_rng(3)
    img = ndi.gaussian_filter(rng.normal(size=(240, 240)), 3)
    img = (img - img.min()) / np.ptp(img)
    moving = np.roll(img, 4, axis=1)  # fixed point p pairs with moving point p + (4, 0)
    grid = Grid((240, 240), (1.0, 1.0))
    ok = np.ones(img.shape, bool)
    good = rng.uniform(40, 200, size=(40, 2))
    bad = rng.uniform(40, 200, size=(6, 2))
    ef = np.vstack([good, bad])
    em = np.vstack([good + [4.0, 0.0], bad - [4.0, 0.0]])
    identity = AffineStep(np.eye(2), np.zeros(2))
    _, cp = auto_points(img, ok, grid, moving, ok, grid, identity, passes=1, extra_pairs=(ef, em, np.full(len(ef), 0.5)))
    assert cp.info["reverse_points"] == 40
    assert cp.inlier[-46:-6].all() and not cp.inlier[-6:].any()


def test_tps_registration_round_trips_through_dataset_and_tfm(tmp_path):
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 120, (30, 2))
    fit = fit_tps(p, np.stack([np.sin(p[:, 1] / 30), 0.5 * np.cos(p[:, 0] / 25)], 1))
    g = Grid((128, 128), (1.0, 1.0))
    reg = Registration([fit.step], fixed_grid=g, moving_grid=g)
    again = Registration.from_dataset(reg.to_dataset())
    q = g.points_xy()[::97]
    np.testing.assert_allclose(again.fixed_to_moving_xy(q), reg.fixed_to_moving_xy(q), atol=1e-12)
    # .tfm holds a B-spline approximation of the TPS: well below a pixel off.
    path = reg.save_tfm(tmp_path / "t.tfm")
    loaded = Registration.load_tfm(path, fixed=g, moving=g)
    inner = q[np.all((q > 4) & (q < 123), axis=1)]
    assert np.abs(loaded.fixed_to_moving_xy(inner) - reg.fixed_to_moving_xy(inner)).max() < 0.05


@pytest.mark.slow
def test_coni_automatic_beats_affine_through_the_points(shared_file):
    pair = coni_pair(shared_file)
    reg = register(pair.fixed, pair.moving)
    err = tre_stats(tre(reg, pair.moving_yx, pair.fixed_yx))
    start = _start(reg)
    err_start = tre_stats(tre(start, pair.moving_yx, pair.fixed_yx))
    q = reg.quality
    assert not q["failed"]
    # Mean of both directions where they agree, the locally better one where they disagree.
    assert q["method"] == "auto" and reg.transform_type == "displacement+affine"
    assert q["both_ways"]["mode"] == "mean" and q["both_ways"]["weights"]["agreed"] > 0.7
    # Issue 14 target: median <= 2.5 px and p95 <= 8 px without any point given (best affine
    # through the 48 points: 5.44 / 12.6). Measured 2.32 / 6.54 (2.36 / 6.47 before the reverse
    # matches' consistency check compared (x, y) with (x, y) offsets). While the spline's anchors past
    # the points followed the start, it was 2.46 / 10.61: the left-edge points 25 and 46, where
    # no block matches (the NCC peak along a straight edge is a ridge), were 13.7 and 11.4 px off,
    # as the start is there; the affine through the points puts them at 2.2 and 1.1 px.
    assert err["median"] <= 2.5
    assert err["p95"] <= 8.0 and err["p95"] < err_start["p95"] - 8.0
    # The automatic points are exposed, with scores, and are mostly consistent (held-out error).
    cp = reg.control_points
    assert cp.inlier.sum() >= 50 and cp.score.shape == cp.inlier.shape
    assert q["control_points"]["loo_px"]["median"] < 1.5
    # Round trip fixed -> moving -> fixed of the two single directions: 2.13 px (below 2.0 with
    # the affine-only first-pass consensus), under the TRE's median.
    assert q["inverse_consistency_px"]["median"] < 2.5
    # Oriented as given, and clearly so (structure NCC 0.52 as given, 0.43 mirrored).
    assert not q["start"]["turn"]["used"] and not q["start"]["turn"]["uncertain"]
    assert q["orientation"] == "as given" and q["orientation_uncertain"] is False
    ds = reg.to_dataset()
    assert ds[names.RESIDUAL].dims == ("y", "x") and np.isfinite(ds[names.RESIDUAL].values).any()
    # The residual map claims nothing within half a block of the EBSD map's border: near that
    # border it once said 1.6-1.7 px where points were 9-21 px off. Of the three hand points
    # there, 37 (on the lower border row) is still 14.6 px off; 25 and 46, on the left edge,
    # 2.2 and 1.1 px.
    rmap = q["residual_map_px"]
    grid = Grid.from_dict(rmap["grid"])
    values = np.asarray(rmap["values"], float)
    h, w = pair.moving.shape[:2]
    margin = np.minimum.reduce([pair.moving_yx[:, 0], h - 1 - pair.moving_yx[:, 0], pair.moving_yx[:, 1], w - 1 - pair.moving_yx[:, 1]])
    col, row = np.round(grid.to_index_xy(pair.fixed_yx[:, ::-1])).astype(int).T
    at = values[np.clip(row, 0, grid.shape[0] - 1), np.clip(col, 0, grid.shape[1] - 1)]
    errors = tre(reg, pair.moving_yx, pair.fixed_yx)
    assert np.flatnonzero(margin < 12).tolist() == [25, 37, 46]
    assert np.isnan(at[margin < 12]).all() and errors[37] > 8 and errors[[25, 46]].max() < 4
    assert np.isfinite(at[margin > 60]).mean() > 0.5
    # The map's level is the error's: at the 34 points where it says something, its median is
    # 2.20 px against their median TRE of 2.03 (TRE / map 0.92). Made from the leave-one-out
    # errors of the overlapping blocks it said 1.43 px (1.42), 1.6-4.1x too optimistic on the
    # five real pairs; from the tile-held-out errors 0.6-1.9x.
    calibration = residual_calibration(reg, pair.moving_yx, pair.fixed_yx)
    assert calibration["points"] == np.isfinite(at).sum() >= 30
    assert calibration["map_median_px"] == pytest.approx(np.nanmedian(at))
    assert 0.7 < calibration["tre_over_map"] < 1.3
    assert q["control_points"]["held_out_px"]["median"] > 1.5 * q["control_points"]["loo_px"]["median"]


@pytest.mark.slow
def test_tfs_never_worse_than_the_affine_start(shared_file):
    pair = tfs_pair(shared_file)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = register(pair.fixed, pair.moving)
    start = _start(reg)
    err = tre_stats(tre(reg, pair.moving_yx, pair.fixed_yx))
    err_start = tre_stats(tre(start, pair.moving_yx, pair.fixed_yx))
    base = point_baselines(pair.moving_yx, pair.fixed_yx)
    # The BSE shows no grain contrast: the block matches are no more distinctive than chance
    # matches in either direction (0.77 and 1.14 x chance), so the spline, which followed chance
    # (p95 15.7-35.1 px over the 12 direction x size x dtype variants against the start's 23.0,
    # flagged as the two directions disagreed), is not applied: the result is the affine start
    # from the section outlines, the same in every variant. Measured 8.85 / 17.8 px: as good as
    # an affine through the hand-picked points judged leave-one-out (9.25 px median), not as the
    # in-sample one (7.66 px; issue 14's line for this pair is not met).
    assert reg.quality["gate"].startswith("rejected: the block matches are no more distinctive than chance")
    assert max(reg.quality["both_ways"]["distinct_over_chance"]) < 1.25
    assert any("no more distinctive than chance" in str(w.message) for w in caught)
    assert err["p95"] == pytest.approx(err_start["p95"], abs=1e-6)
    assert err["median"] <= base["affine_loo"]["median"]
    assert err["median"] < 0.15 * base["none"]["median"]


def _start(reg):
    """The affine start the automatic registration chose, as a registration of its own."""
    from metallo.correlate._transform import AffineStep

    start = reg.quality["start"]
    step = AffineStep(np.asarray(start["matrix"]), np.asarray(start["offset"]))
    return Registration([step], fixed_grid=reg.fixed_grid, moving_grid=reg.moving_grid)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unrelated", "wrong crop"])
def test_failed_registration_is_flagged(shared_file, case):
    import cv2

    coni = coni_pair(shared_file)
    if case == "unrelated":
        other = tfs_pair(shared_file).moving
        fixed, moving = coni.fixed, cv2.resize(other, (coni.fixed.shape[1], coni.fixed.shape[0]))
    else:
        # Left third of the BSE against the right half of the EBSD map: almost no common field.
        fixed, moving = coni.fixed[:, :330], coni.moving[:, 314:]
    with pytest.warns(UserWarning, match="registration failed"):
        reg = register(fixed, moving)
    assert reg.quality["failed"] is True
    assert reg.quality["failure_reasons"]
    assert "failed" in reg.to_dataset().attrs["quality"]


@pytest.mark.slow
def test_quarter_turned_moving_image_of_an_elongated_section_is_found(shared_file):
    """An EBSD map a quarter turn from its micrograph (a frame mix-up between acquisition programs).

    Slice8_TFS's section is twice as wide as high: the major axes of the two outlines give the
    turn up to a half turn and a mirror, the structure picks among those. Before, only half
    turns and mirrors were tried and the registration ended 580 px off (flagged failed).
    """
    tfs = tfs_pair(shared_file)
    w = tfs.moving.shape[1]
    turned = np.rot90(tfs.moving)  # counter-clockwise as displayed
    turned_yx = np.c_[w - 1 - tfs.moving_yx[:, 1], tfs.moving_yx[:, 0]]
    with pytest.warns(UserWarning, match="looks turned 90 degrees counter-clockwise"):
        reg = register(tfs.fixed, turned)
    turn = reg.quality["start"]["turn"]
    assert turn["used"] and not turn["uncertain"]  # measured 0.45 against 0.18 as given
    # Measured 11.8 px; unregistered 593 px. The deformable stage on this pair moves by several
    # pixels with the block sampling (as given 6.50, the other turns and mirrors 7.6-8.9 px).
    assert np.median(tre(reg, turned_yx, tfs.fixed_yx)) < 15.0


@pytest.mark.slow
def test_transposed_moving_image_is_found_both_ways(shared_file):
    """Slice381's EBSD map transposed (mirrored and a quarter turn): each direction finds it.

    Registered back (the transposed map as the fixed image), the outline fitted as given by
    stretching one axis 1.6x against the other scored 0.536 on the structure and the right start
    0.532; the start that keeps the pixel aspect now wins the near-tie. Before, the two
    directions disagreed by 212 px and the result fell back to the affine start (9.5 px).
    """
    coni = coni_pair(shared_file)
    with pytest.warns(UserWarning, match="looks mirrored \\(rows flipped\\), turned 90 degrees clockwise"):
        reg = register(coni.fixed, np.ascontiguousarray(coni.moving.T))
    assert reg.quality["start"]["turn"]["used"]
    assert np.linalg.det(np.asarray(reg.quality["start"]["matrix"])) < 0
    # Both directions agree (round trip 2.18 px; below 2.0 with the affine-only first-pass consensus).
    err = tre(reg, coni.moving_yx[:, ::-1], coni.fixed_yx)
    assert np.median(err) < 3.0 and not reg.quality["failed"]
    assert reg.quality["inverse_consistency_px"]["median"] < 2.5


@pytest.mark.slow
@pytest.mark.parametrize("degrees", [-7.0, 3.0, 7.0, 10.0, 15.0])
def test_a_map_turned_a_few_degrees_is_registered_or_flagged_never_silently_wrong(shared_file, degrees):
    """Slice381's EBSD map turned a few degrees in its plane (on a larger canvas), points turned with it.

    Measured: -7 degrees 2.95 px, not flagged; 3 degrees 3.44 px, flagged (round trip 3.6 px).
    7 and 10 degrees counter-clockwise tie in structure with the mirrored start (0.570 against
    0.581 at 7), which won the near-tie: 476 and 416 px off, flagged failed (the directions
    disagreed by 229 px). The near-tie is now settled by the whole registration: the forward
    direction is registered again as given, the two directions agree, and that is used
    (2.72 and 2.71 px, not flagged), with a warning that says so. At 15 degrees (3.25 px, flagged
    for a 3.9 px round trip) the directions' starts agree, so the other orientation is not tried.
    """
    coni = coni_pair(shared_file)
    turned, turned_yx = _turned_map(coni, degrees)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = register(coni.fixed, turned)
    median = float(np.median(tre(reg, turned_yx, coni.fixed_yx)))
    assert np.median(np.linalg.norm(turned_yx - coni.fixed_yx, axis=1)) > 100  # far off unregistered
    if degrees in (-7.0, 7.0, 10.0):
        assert median < 3.5 and not reg.quality["failed"]
        assert reg.quality["orientation"] == "as given"
    if degrees in (7.0, 10.0):
        settled = reg.quality["orientation_settled"]
        assert settled["by"].startswith("the whole registration")
        assert settled["first"]["orientation"] == "mirrored (rows flipped)"
        assert any("the orientation was a near-tie" in str(c.message) for c in caught)
    if degrees == 15.0:
        # Flagged (round trip 3.9 px) but its two directions' starts agree: the failure is not an
        # orientation question, so the other orientation is not tried and nothing is re-run.
        assert reg.quality["failed"] is True and median < 3.5
        assert "orientation_settled" not in reg.quality
        assert reg.quality["orientation"] == "as given"
    if median > 5.0:
        assert reg.quality["failed"] is True
        assert any("registration failed" in str(c.message) for c in caught)


@pytest.mark.slow
def test_slice8_tfs_turned_a_few_degrees_is_registered_from_its_fill_outline(shared_file):
    """Slice8_TFS's EBSD map turned 7 degrees on a larger canvas: its section is 25 % of the canvas.

    Before, no section outline was found (the section had to cover 30 % of the image), the
    structure search chose a 0.61x scale and the result ended 271 px off (flagged). The section
    inside the map's fill is found now, the outline start wins, and the result is as good as the
    map as given: measured 8.53 px median (as given 8.85; the block matches are chance, so both
    are the outline start), under an affine through the 18 points judged leave-one-out (9.25 px).
    """
    tfs = tfs_pair(shared_file)
    turned, turned_yx = _turned_map(tfs, 7.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = register(tfs.fixed, turned)
    assert reg.quality["start"]["chosen"] == "outline"
    assert reg.quality["orientation"] == "as given"
    assert np.median(tre(reg, turned_yx, tfs.fixed_yx)) < point_baselines(tfs.moving_yx, tfs.fixed_yx)["affine_loo"]["median"]


@pytest.mark.slow
def test_a_map_five_times_coarser_than_the_micrograph_starts_from_its_outline(shared_file):
    """Slice381's EBSD map at a fifth of its size (97 x 129 px; a 0.5 um step against 0.1 um
    pixels), no pixel sizes given: the outline start carries the 5x scale.

    Before, a start's scale had to stay within 1:4 .. 4:1 whatever was known, so the outline start
    was dropped, the structure search (1:2 .. 2:1) overlapped the images on 0.5 % of the field
    and the registration stopped with an error (Slice8_TFS, coni16_459: 419 and 384 px off).
    Measured now: the start, 9.9 px median in micrograph pixels (about two map pixels), is kept,
    and flagged, since the reverse direction finds too few matches in the small map to check it.
    """
    import cv2

    coni = coni_pair(shared_file)
    h, w = coni.moving.shape[:2]
    small = cv2.resize(coni.moving, (round(w * 0.2), round(h * 0.2)), interpolation=cv2.INTER_AREA)
    small_yx = (coni.moving_yx + 0.5) * [small.shape[0] / h, small.shape[1] / w] - 0.5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = register(coni.fixed, small)
    start = reg.quality["start"]
    assert start["chosen"] == "outline"
    assert 0.18 < np.sqrt(abs(np.linalg.det(np.asarray(start["matrix"])))) < 0.22
    assert np.median(tre(reg, small_yx, coni.fixed_yx)) < 12.0
    assert reg.quality["failed"] is True
    assert any("registration failed" in str(c.message) for c in caught)


def _turned_map(coni, degrees: float):
    """A pair's EBSD map turned ``degrees`` counter-clockwise on a larger canvas, and its points."""
    import cv2

    h, w = coni.moving.shape[:2]
    side = int(np.ceil(np.hypot(h, w)))
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    rot[:, 2] += [(side - w) / 2, (side - h) / 2]
    turned = cv2.warpAffine(coni.moving, rot, (side, side), flags=cv2.INTER_LINEAR, borderValue=0)
    turned_yx = (np.c_[coni.moving_yx[:, 1], coni.moving_yx[:, 0], np.ones(len(coni.moving_yx))] @ rot.T)[:, ::-1]
    return turned, turned_yx


@pytest.mark.slow
def test_the_other_orientation_of_a_near_tie_is_never_used_when_it_fails(shared_file, monkeypatch):
    """A failed result is replaced only by an alternative that passes.

    At 15 degrees the result is flagged (round trip 3.9 px) with an uncertain orientation (0.574 as
    given, 0.534 mirrored), but the two starts agree, so the other orientation is not tried. With
    that check forced open, the mirror is registered, fails (its directions ~230 px apart), and the
    first result must be kept, still flagged, with the attempt recorded.
    """
    import metallo.correlate._register as r

    coni = coni_pair(shared_file)
    turned, turned_yx = _turned_map(coni, 15.0)
    monkeypatch.setattr(r, "_starts_can_be_averaged", lambda *a, **k: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = register(coni.fixed, turned)
    settled = reg.quality["orientation_settled"]
    assert settled["by"] == "not settled: the other orientation failed too"
    assert [t["directions"] for t in settled["tried"]] == [["forward"]]
    assert settled["tried"][0]["failed"] and settled["tried"][0]["orientation"] == "mirrored (rows flipped)"
    assert reg.quality["failed"] is True and reg.quality["orientation"] == "as given"
    assert np.median(tre(reg, turned_yx, coni.fixed_yx)) < 3.5
    assert not any("the orientation was a near-tie" in str(c.message) for c in caught)
    assert any(str(c.message).startswith("registration failed") for c in caught)


#: coni16_459's start records, measured: its EBSD map turned 5 degrees (the mirror ended 286 px off
#: with every other check passing), and Slice381's turned 7 degrees (a real near-tie, 0.57 / 0.58).
_CONI16_TURNED_5 = {"name": "mirrored (rows flipped)", "score": 0.323, "score_as_given": 0.273, "used": False,
                    "uncertain": True, "outline_iou_gap": 0.0000168}
_SLICE381_TURNED_7 = {"name": "mirrored (rows flipped)", "score": 0.581, "score_as_given": 0.570, "used": True,
                      "uncertain": True, "outline_iou_gap": -0.005}


def _passing_quality(turn: dict) -> dict:
    """A quality record that every other check of the verdict passes (coni16_459 mirrored, measured)."""
    return {"start": {"turn": turn}, "structure_ncc": 0.343, "overlap_fraction": 0.99, "overlap_fraction_of_moving": 0.64,
            "control_points": {"inliers": 31, "loo_px": {"median": 0.99}, "pass0_distinct": 62, "pass0_kept": 20,
                               "work_factor": 1},
            "inverse_consistency_px": {"median": 1.19}, "both_ways": {"weights": {"agreed": 0.917}}}


def test_an_orientation_that_cannot_be_told_fails_the_registration():
    """Structure poor both ways (< 0.4) and outlines alike (IoU within 0.02): the verdict fails, naming why."""
    from metallo.correlate._register import _orientation_undetermined, _verdict

    reason = _orientation_undetermined(_CONI16_TURNED_5)
    assert reason is not None and "0.27 as given, 0.32 mirrored (rows flipped)" in reason
    quality = _passing_quality(_CONI16_TURNED_5)
    with pytest.warns(UserWarning, match="registration failed: the orientation cannot be told"):
        _verdict(quality, None)
    assert quality["failed"] is True and quality["failure_reasons"] == [reason]
    # What can be told stays a pass: a real near-tie on good structure (settled by the whole
    # registration), an outline that fits one way clearly better, an orientation not in doubt.
    for turn in (_SLICE381_TURNED_7, {**_CONI16_TURNED_5, "outline_iou_gap": 0.025},
                 {**_CONI16_TURNED_5, "uncertain": False}):
        assert _orientation_undetermined(turn) is None
        quality = _passing_quality(turn)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _verdict(quality, None)
        assert quality["failed"] is False


@pytest.mark.slow
def test_mirrored_moving_image_is_found_and_said(shared_file):
    """An EBSD map whose rows run the other way (a y-axis convention) is registered through the mirror, with a warning.

    Before, the outline start fitted the flipped section as given (a rectangle fits either way)
    and returned a median error of 305 px at the 48 points with every quality figure healthy.
    """
    coni = coni_pair(shared_file)
    h = coni.moving.shape[0]
    flipped_yx = np.c_[h - 1 - coni.moving_yx[:, 0], coni.moving_yx[:, 1]]
    with pytest.warns(UserWarning, match="looks mirrored \\(rows flipped\\)"):
        reg = register(coni.fixed, coni.moving[::-1])
    turn = reg.quality["start"]["turn"]
    assert turn["used"] and not turn["uncertain"] and turn["name"] == "mirrored (rows flipped)"
    # Said where a QC engineer reads it: the stored record that the report's registration table shows.
    assert '"orientation": "mirrored (rows flipped)"' in reg.to_dataset().attrs["quality"]
    assert np.linalg.det(np.asarray(reg.quality["start"]["matrix"])) < 0
    # Measured 2.59 px (2.56 for the pair as given; benchmarks/correlate.py --orientation-only);
    # no registration is 294 px off.
    assert np.median(tre(reg, flipped_yx, coni.fixed_yx)) < 3.0
    assert not reg.quality["failed"]


@pytest.mark.slow
def test_inverted_contrast_moving_image_still_uses_the_section_outline(shared_file):
    """A moving image whose section is dark on a bright background (an SE image of a charging
    mount, an inverted map) is registered through its outline.

    Before, no outline was found in it (only bright sections were looked for), the NCC search
    started 26 px off and the result was a median of 8.5 px, p95 61.6 px, not flagged.
    """
    coni = coni_pair(shared_file)
    inverted = float(coni.moving.max()) - coni.moving.astype(float)
    reg = register(coni.fixed, inverted)
    start = reg.quality["start"]
    assert start["chosen"] == "outline" and start["outline_contrast"].startswith("inverted: the moving image")
    err = tre(reg, coni.moving_yx, coni.fixed_yx)
    # Measured 2.88 / 14.1 px against 2.38 / 13.6 for the pair as given, both before the
    # second-order first-pass consensus (as given now 2.56 / 10.9).
    assert np.median(err) < 3.5 and np.percentile(err, 95) < 20.0
    assert not reg.quality["failed"]


@pytest.mark.slow
def test_ebsd_map_at_a_third_of_the_resolution_without_pixel_sizes(shared_file):
    """The EBSD map at 1/3 of the BSE's resolution (EBSD-Correction's demo: 1.5 vs 0.52 µm/px),
    both given as plain arrays.

    Before, the outline fit started at the identity scale; in the reverse direction the small
    section sat inside the large one, where the mask is flat, and never grew: a median of
    38.8 px, flagged failed. The section areas now give the starting scale.
    """
    from scipy import ndimage as ndi

    coni = coni_pair(shared_file)
    small = ndi.zoom(coni.moving.astype(float), 1 / 3, order=1)
    reg = register(coni.fixed, small)
    assert reg.quality["start"]["chosen"] == "outline"
    err = tre(reg, coni.moving_yx / 3, coni.fixed_yx)
    # Measured 3.24 / 16.1 BSE px against 2.38 / 13.6 at the same resolution, both before the
    # second-order first-pass consensus (now 2.56 / 10.9 there); no registration: 307 px.
    assert np.median(err) < 4.5 and np.percentile(err, 95) < 22.0
    assert not reg.quality["failed"]


def test_a_shaded_field_inside_the_specimen_is_no_section():
    from metallo.correlate._register import _foreground, _prepare

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:120, :160]
    # Shading across a field inside the specimen: two overlapping grey-level populations.
    shaded = 0.6 + 0.002 * xx + rng.normal(0, 0.08, xx.shape)
    assert _foreground(_prepare(shaded, "fixed")) is None
    # A section on a darker mount: two well separated ones.
    section = np.where((yy > 20) & (yy < 100) & (xx > 30) & (xx < 130), 0.8, 0.1) + rng.normal(0, 0.08, xx.shape)
    fg = _foreground(_prepare(section, "fixed"))
    assert fg is not None and abs(fg.mean() - 80 * 100 / (120 * 160)) < 0.03


def test_a_map_section_is_what_its_fill_surrounds():
    """An EBSD map's section whose shadowed band is as dark as the fill around it.

    The grey levels leave the band out (coni16_459: 74 % of the scanned section kept); the
    section is what the map's one fill value surrounds. A map scanned inside a section, with a
    few empty rows along one edge, keeps its grey-level outline.
    """
    from correlate_helpers import make_shadowed_map_pair

    from metallo.correlate._register import _fill_outline, _foreground, _grey_outline, _prepare

    _, moving, _, _ = make_shadowed_map_pair()
    p = _prepare(moving, "moving")
    scanned = moving != 58
    fg, grey = _foreground(p), _grey_outline(p)
    assert grey is not None and (grey & scanned).sum() < 0.9 * scanned.sum()
    assert fg is not None and (fg & scanned).sum() / (fg | scanned).sum() > 0.97
    # Invisible noise (0.05 grey levels) keeps the fill: exact equality had lost it.
    noisy = moving + np.random.default_rng(2).normal(0.0, 0.05, moving.shape)
    fg = _foreground(_prepare(noisy, "moving"))
    assert fg is not None and (fg & scanned).sum() / (fg | scanned).sum() > 0.97
    rng = np.random.default_rng(1)
    inside = 0.3 + 0.7 * rng.random((80, 100))
    inside[:6] = 0.0
    assert _fill_outline(_prepare(inside, "moving")) is None


def test_a_ragged_grey_outline_gives_way_to_the_fill_a_smooth_one_does_not():
    """Dark grains along a map's edge make its grey-level outline ragged; the fill's is the section.

    Slice8_TFS: the grey levels keep 91 % of the section (so the coverage rule kept them) along an
    outline 1.62x as long as the fill's; with it the affine start was 13.4 px off at the median,
    with the fill's 8.85 px. A field turned on a canvas, its own dark but unflat background in
    thin bands around a smooth section, keeps the grey-level section (Slice381 turned: 0.95).
    """
    from scipy import ndimage as ndi
    from skimage.measure import perimeter

    from metallo.correlate._register import (
        _FILL_COVERED,
        _FILL_RAGGED,
        _fill_outline,
        _foreground,
        _grey_outline,
        _prepare,
    )

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:200, :300]

    def turned_rect(half_h, half_w):
        t = np.deg2rad(7.0)
        u = (xx - 150) * np.cos(t) + (yy - 100) * np.sin(t)
        v = -(xx - 150) * np.sin(t) + (yy - 100) * np.cos(t)
        return (np.abs(u) < half_w) & (np.abs(v) < half_h)

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    # A section of 10 x 10 px grains on a zero fill, 30 % of the grains along its edge dark (not flat).
    section = turned_rect(60, 100)
    edge = section & ~ndi.binary_erosion(section, iterations=10)
    dark = np.kron(rng.random((20, 30)) < 0.3, np.ones((10, 10), bool)) & edge
    img = np.where(section, np.kron(0.5 + 0.5 * rng.random((20, 30)), np.ones((10, 10))), 0.0)
    img[dark] = 0.04 + 0.03 * rng.random(int(dark.sum()))
    p = _prepare(img, "moving")
    grey, fill = _grey_outline(p), _fill_outline(p)
    assert grey is not None and fill is not None
    assert (grey & fill).sum() >= _FILL_COVERED * fill.sum()  # the coverage rule alone kept the grey outline
    assert perimeter(grey) > _FILL_RAGGED * perimeter(fill)
    assert iou(_foreground(p), section) > 0.97
    # A field on a canvas: thin dark, noisy bands of its own around a smooth-edged section.
    field, inner = turned_rect(76, 126), turned_rect(72, 120)
    padded = np.where(field, 0.08 + 0.06 * rng.random(yy.shape), 0.0)
    padded[inner] = 0.7 + 0.1 * rng.random(int(inner.sum()))
    p = _prepare(padded, "moving")
    grey, fill = _grey_outline(p), _fill_outline(p)
    assert grey is not None and fill is not None and iou(fill, field) > 0.97
    assert (grey & fill).sum() >= _FILL_COVERED * fill.sum() and perimeter(grey) < perimeter(fill)
    assert iou(_foreground(p), inner) > 0.97


def test_the_gate_keeps_the_start_when_the_matches_are_chance():
    """No evidence, no spline: block matches no more distinctive than chance keep the start."""
    from metallo.correlate._register import _GATE_MIN_DISTINCT, _gate, _prepare
    from metallo.correlate._transform import AffineStep

    rng = np.random.default_rng(0)
    img = ndi_blur(rng.random((96, 128)))
    fp, mp = _prepare(img, "fixed"), _prepare(img, "moving")
    start = [AffineStep(np.eye(2), np.array([0.4, 0.0]))]
    spline = [AffineStep(np.eye(2), np.zeros(2))]  # better than the start on identical images
    for distinct, kept in ((3.0, True), (_GATE_MIN_DISTINCT - 0.01, False), (float("nan"), True)):
        quality = {"control_points": {"pass0_distinct_over_chance": distinct},
                   "residual_map_px": {"values": np.full((3, 4), 1.5), "grid": {}}}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = _gate(fp, mp, spline, start, quality)
        assert (out is spline) is kept and (out is start) is not kept
        assert quality["gate"] == "kept" if kept else quality["gate"].startswith("rejected: the block matches are no more")
        assert any("no more distinctive than chance" in str(w.message) for w in caught) is not kept
        # The map made from chance matches claims nothing once they are rejected.
        assert np.isnan(quality["residual_map_px"]["values"]).all() is not kept
    # Rejected for another reason (a spline that moves the structure off): the map is blanked too.
    quality = {"control_points": {"pass0_distinct_over_chance": 3.0}, "residual_map_px": {"values": np.full((3, 4), 1.5), "grid": {}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _gate(fp, mp, [AffineStep(np.eye(2), np.array([6.0, 0.0]))], start, quality)
    assert out is start and quality["gate"].startswith("rejected: the structure images agree less")
    assert np.isnan(quality["residual_map_px"]["values"]).all()
    # Both directions run: the better direction's figure is passed and decides.
    quality = {"control_points": {"pass0_distinct_over_chance": 0.5}}
    assert _gate(fp, mp, spline, start, quality, distinct=2.0) is spline


def ndi_blur(a):
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(a, 2.0)


def test_a_small_section_in_its_fill_is_found_on_a_large_or_turned_canvas():
    """The section inside a fill is found when it covers little of the image, or the map is turned.

    A map on a canvas 2.2 times its size, filled with the fill value, holds its section on 16 % of
    the image; a map turned 7 degrees with unmeasured (NaN) surroundings has no fill along the
    image border, only next to the unmeasured pixels. Before, the first was no outline at all
    (the section had to cover 30 %: Slice8_TFS's EBSD map turned a few degrees on a larger
    canvas, its section 25 % of it, ended 104-279 px off) and the second lost the shadowed band
    (IoU 0.83): the fill next to the unmeasured pixels was not flat. Now the NaN surroundings
    take the fill beside them (``_prepare``).
    """
    import cv2
    from correlate_helpers import make_shadowed_map_pair

    from metallo.correlate._register import _foreground, _prepare

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    _, moving, _, _ = make_shadowed_map_pair()
    scanned = moving != 58
    h, w = moving.shape
    canvas = np.full((int(2.2 * h), int(2.2 * w)), 58, np.uint8)
    canvas[50:50 + h, 80:80 + w] = moving
    truth = np.zeros(canvas.shape, bool)
    truth[50:50 + h, 80:80 + w] = scanned
    assert 0.1 < truth.mean() < 0.2
    fg = _foreground(_prepare(canvas, "moving"))
    assert fg is not None and iou(fg, truth) > 0.97
    side = int(np.ceil(np.hypot(h, w)))
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 7.0, 1.0)
    rot[:, 2] += [(side - w) / 2, (side - h) / 2]
    turned = cv2.warpAffine(moving.astype(np.float32), rot, (side, side), flags=cv2.INTER_NEAREST, borderValue=np.nan)
    truth = cv2.warpAffine(scanned.astype(np.uint8), rot, (side, side), flags=cv2.INTER_NEAREST) > 0
    fg = _foreground(_prepare(turned, "moving"))
    assert fg is not None and iou(fg, truth) > 0.97


@pytest.mark.slow
def test_a_shadowed_band_does_not_squeeze_the_map():
    """The start must fit the section outlines, even where the structure prefers a wrong one.

    Before, the map's section was taken without its shadowed band: the outline start squeezed
    the map's rows by 17 %, the points along the lower edge ended 42-45 px off, and nothing was
    flagged (coni16_459 the same way: p95 80 px, worse than no registration, 42.7 px). Measured
    now: 0.4-3.9 px at the seven points (the spline through 326 matches kept; 0.0-0.9 px where
    the gate kept the start instead), and the start keeps the row scale.
    """
    from correlate_helpers import make_shadowed_map_pair

    fixed, moving, fixed_yx, moving_yx = make_shadowed_map_pair()
    reg = register(fixed, moving)
    assert reg.quality["start"]["chosen"] == "outline"
    matrix = np.asarray(reg.quality["start"]["matrix"])  # (x, y)
    assert abs(matrix[1, 1] - 1.0) < 0.02 and abs(matrix[0, 0] - 1.15) < 0.02
    err = tre(reg, moving_yx, fixed_yx)
    assert np.median(err) < 2.0 and err.max() < 5.0
    assert not reg.quality["failed"]


def test_a_start_that_misses_the_fitted_outlines_cannot_win():
    """Where the outline fit converges (section IoU >= 0.95), a start overlapping the sections
    less than 0.9 is no candidate, however well its structure images agree."""
    from correlate_helpers import make_shadowed_map_pair

    from metallo.correlate._register import _auto_start, _prepare

    fixed, moving, _, _ = make_shadowed_map_pair()
    _, info = _auto_start(_prepare(fixed, "fixed"), _prepare(moving, "moving"), ratio=0.8, transform="affine",
                          ransac_px=3.0, max_side=2048, min_inliers=8, seed=0)
    assert info["outline_iou"]["outline"] >= 0.95
    assert info["outline_iou"]["identity"] < 0.9 and info["scores"]["identity"] == -1.0
    assert "IoU" in info["not_used"]["identity"]


@pytest.mark.parametrize("bonus, why", [(0.001, "near-tie in structure"), (0.1, "structure agrees poorly both ways")])
def test_the_outline_settles_an_orientation_the_structure_cannot(monkeypatch, bonus, why):
    """Weak structure evidence for a turn: the outline fit that overlaps better decides.

    coni16_459 at half size: its map's grains do not show in the BSE image, the structure
    scored -0.060 both ways and the half-turned start won by 0.0002 (median error 255 px); as
    given its sections overlap 0.977, turned 0.949. Reversed, the structure preferred the half
    turn clearly but poorly (0.21 against 0.13, both below the 0.4 of a convincing start) and the
    result was 223 px off. Here the structure score favours every turned or mirrored start by
    ``bonus`` at a poor level (0.2), and the turned outline fit (IoU 0.85) is left a candidate.
    """
    from correlate_helpers import make_shadowed_map_pair

    import metallo.correlate._register as R

    def rigged(fixed, moving, steps, **kw):
        m = steps[0].matrix
        return 0.2 + (bonus if np.trace(m) < 0 or np.linalg.det(m) < 0 else 0.0), 1.0

    monkeypatch.setattr(R, "_structure_score", rigged)
    monkeypatch.setattr(R, "_OUTLINE_SAME_IOU", 0.8)
    fixed, moving, _, _ = make_shadowed_map_pair()
    _, info = R._auto_start(R._prepare(fixed, "fixed"), R._prepare(moving, "moving"), ratio=0.8, transform="affine",
                            ransac_px=3.0, max_side=2048, min_inliers=8, seed=0)
    assert info["chosen"] == "outline" and not info["turn"]["used"] and info["turn"]["uncertain"]
    assert info["turn"]["chosen_by"] == f"section outline overlap ({why})"
    assert info["outline_iou"]["outline"] > info["outline_iou"]["outline turned"] + 0.02


def test_padding_rows_and_columns_are_not_data():
    """A map pasted into a zero canvas (EBSD-Correction's exports): the canvas is unmeasured.

    Slice385 NiAlMo (EBSD-Correction, not in ../shared): its EBSD map sits between 84 zero rows
    above and 76 below; taken as data, the canvas edge was the strongest structure in the image.
    """
    from metallo.correlate._register import _padding, _prepare

    rng = np.random.default_rng(0)
    canvas = np.zeros((60, 80))
    canvas[10:50, 5:70] = rng.random((40, 65))
    expected = np.ones(canvas.shape, bool)
    expected[10:50, 5:70] = False
    assert np.array_equal(_padding(canvas), expected)
    assert _prepare(canvas, "moving").valid.sum() == 40 * 65
    # A lossy or re-quantised export (here: noise of 0.05 grey levels in 8 bits) keeps its padding:
    # exact equality had lost it, and the NiAlMo map registered 427 px off (flagged failed).
    ripple = canvas + rng.normal(0.0, 0.05 / 255, canvas.shape)
    assert np.array_equal(_padding(ripple), expected)
    # The constant surroundings of a section (unindexed around it) go on irregularly past the
    # first rows: they are the section's outline, which the registration needs, not padding.
    yy, xx = np.mgrid[:60, :80]
    section = np.where((yy - 30) ** 2 / 20**2 + (xx - 40) ** 2 / 30**2 < 1, 0.2 + rng.random((60, 80)), 0.0)
    assert not _padding(section).any()
    assert not _padding(rng.random((30, 30))).any()


def test_structure_search_finds_scale_turn_and_shift_of_a_padded_map():
    """The start of last resort: the structure images searched over scale, rotation and shift.

    The synthetic specimen's EBSD map (0.5 µm) in a zero canvas against its LOM (0.3 µm), both
    as plain arrays: the search must find the 1 : 0.6 scale without pixel sizes. Measured
    scale 1.64 (true 1.667, 5 % steps), median 1.6 moving px from the known mapping.
    """
    from metallo.correlate._register import _prepare, _structure_search
    from metallo.synth import make_specimen

    spec = make_specimen(0)
    lom, iq = np.asarray(spec.lom, float), np.asarray(spec.ebsd["iq"], float)
    canvas = np.zeros((260, 260))
    canvas[30:230, 30:230] = iq
    step, info = _structure_search(
        _prepare(lom, "fixed"), _prepare(canvas, "moving"), scales=np.geomspace(0.5, 2.0, 29), angles_deg=np.arange(-10.0, 10.5, 2.0)
    )
    assert abs(info["scale"] / (0.5 / 0.3) - 1) < 0.05
    rr, cc = np.meshgrid(np.arange(10, 190, 15.0), np.arange(10, 190, 15.0), indexing="ij")
    ebsd_yx = np.c_[rr.ravel(), cc.ravel()]
    lom_px = spec.ebsd_to_lom(ebsd_yx * 0.5) / 0.3
    inside = (lom_px > 5).all(axis=1) & (lom_px < lom.shape[0] - 5).all(axis=1)
    err = np.linalg.norm(step.apply(lom_px[inside][:, ::-1]) - (ebsd_yx[inside] + 30)[:, ::-1], axis=1)
    assert np.median(err) < 3.0


def test_outline_fit_caps_its_fine_levels():
    """The outline fit stops its full-resolution level after ``full_resolution_iterations``; the coarser ones
    run on. (An outline that does not fit, Slice385 NiAlMo's section in debris, ran 500
    iterations at full resolution, 20-30 s a fit; the ones that fit need < 70.)"""
    import SimpleITK as sitk

    from metallo.correlate._register import _run_affine

    yy, xx = np.mgrid[:96, :128]
    fixed = sitk.GetImageFromArray(np.exp(-((yy - 48.0) ** 2 + (xx - 64.0) ** 2) / 800).astype(np.float32))
    moving = sitk.GetImageFromArray(np.exp(-((yy - 40.0) ** 2 + (xx - 52.0) ** 2) / 500).astype(np.float32))
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    reg.SetInterpolator(sitk.sitkLinear)
    per_level: dict[int, int] = {}
    reg.AddCommand(sitk.sitkIterationEvent, lambda: per_level.__setitem__(reg.GetCurrentLevel(), per_level.get(reg.GetCurrentLevel(), 0) + 1))
    step = _run_affine(reg, sitk.AffineTransform(2), fixed, moving, min_step=1e-12, iterations=200, gradient_tolerance=1e-16,
                       failure="{}", shrink=(4, 2, 1), full_resolution_iterations=5)
    assert per_level[0] > 5 and per_level[1] > 5 and per_level[2] == 5
    # The fixed blob's centre (64, 48) went most of the way to the moving one's (52, 40).
    centre = step.apply(np.array([[64.0, 48.0]]))[0]
    assert np.linalg.norm(centre - [52.0, 40.0]) < 0.5 * np.hypot(12.0, 8.0)


def test_small_unmeasured_patches_are_filled_large_ones_kept():
    from metallo.correlate._register import _fill_small_gaps

    img = np.tile(np.arange(40.0), (40, 1))
    holed = img.copy()
    holed[10, 12] = np.nan  # one unindexed point
    holed[20:22, 30:32] = np.nan  # a small cluster
    holed[:, :3] = np.nan  # outside the scan: 120 px, more than 16 and 0.1 % of 1600
    out = _fill_small_gaps(holed)
    assert out[10, 12] in (11.0, 13.0) and np.isfinite(out[20:22, 30:32]).all()
    assert np.abs(out[20:22, 30:32] - img[20:22, 30:32]).max() <= 1.0  # nearest measured neighbour
    assert np.isnan(out[:, :3]).all()


@pytest.mark.slow
def test_scattered_unindexed_points_do_not_break_the_registration(shared_file):
    """10 % of the EBSD-derived image unmeasured (NaN) at random, plus a 40 x 60 px hole.

    Before, each NaN pixel cut a hole into the structure images and the result was a median of
    15.5 px, p95 116 px (flagged failed); the scattered points are now filled from their
    neighbours and the hole stays unmeasured.
    """
    coni = coni_pair(shared_file)
    moving = coni.moving.astype(float)
    moving[np.random.default_rng(0).random(moving.shape) < 0.1] = np.nan
    moving[200:240, 300:360] = np.nan
    reg = register(coni.fixed, moving)
    err = tre(reg, coni.moving_yx, coni.fixed_yx)
    # Measured 2.51 / 14.9 px against 2.38 / 13.6 without the NaNs, both before the
    # second-order first-pass consensus (now 2.56 / 10.9 without them).
    assert np.median(err) < 3.5 and np.percentile(err, 95) < 20.0
    assert not reg.quality["failed"]


@pytest.mark.parametrize(
    "loo, factor, reason",
    [(6.0, 1, "held-out"), (6.0, 3, None), (1.0, 1, "round trip"), (1.0, 3, None)],
)
def test_verdict_pixel_thresholds_count_working_pixels(loo, factor, reason):
    # A 3x finer fixed image is worked on a 3x coarser grid: a held-out error of 6 fixed px or a
    # 6 px round trip is 2 working px there (fine), but 6 working px at factor 1 (limits: 5).
    quality = {
        "control_points": {"inliers": 200, "loo_px": {"median": loo}, "pass0_distinct": 100, "pass0_kept": 80, "work_factor": factor},
        "structure_ncc": 0.5, "overlap_fraction": 0.9, "inverse_consistency_px": {"median": 6.0},
    }
    _assert_verdict(quality, reason)


@pytest.mark.slow
def test_exact_landmarks_reproduce_points_and_leave_one_out(shared_file):
    pair = coni_pair(shared_file)
    reg = register(pair.fixed, pair.moving, method="landmarks+tps", landmarks=(pair.moving_yx, pair.fixed_yx))
    # Exact in both directions: moving points land on the fixed ones, and the Newton inverse back.
    assert tre(reg, pair.moving_yx, pair.fixed_yx).max() < 0.01
    assert tre(reg, pair.moving_yx, pair.fixed_yx, frame="moving").max() < 0.01
    loo = reg.quality["landmark_loo_px"]
    # The spline maps moving -> fixed, so its closed-form leave-one-out residual is the TRE of the
    # left-out point in fixed pixels: it equals scipy's RBFInterpolator refitted 48 times.
    reference = point_baselines(pair.moving_yx, pair.fixed_yx)
    assert loo["median"] == pytest.approx(reference["tps_loo"]["median"], abs=1e-6)
    assert loo["p95"] == pytest.approx(reference["tps_loo"]["p95"], abs=1e-6)
    # Issue 14: <= 2.0 px (measured 1.959; the spline fitted fixed -> moving gave 2.085).
    assert loo["median"] == pytest.approx(1.959, abs=0.005)
    # The residual map comes from the landmarks' held-out errors.
    assert np.isfinite(reg.quality["residual_map_px"]["values"]).any()


@pytest.mark.slow
def test_given_points_stay_exact_next_to_automatic_ones(shared_file):
    pair = coni_pair(shared_file)
    given = slice(0, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = register(pair.fixed, pair.moving, landmarks=(pair.moving_yx[given], pair.fixed_yx[given]))
    assert reg.quality["initial"] == "landmarks"
    assert tre(reg, pair.moving_yx[given], pair.fixed_yx[given]).max() < 0.01
    # The other 36 points, not given: still better than the affine through the 48.
    held_out = tre_stats(tre(reg, pair.moving_yx[12:], pair.fixed_yx[12:]))
    assert held_out["median"] < point_baselines(pair.moving_yx, pair.fixed_yx)["affine_in_sample"]["median"]


_VARIANTS: dict[tuple, dict] = {}


def _variant(shared_file, reverse, downsample, dtype):
    """TRE (forward fixed frame) of the default on a variant of Slice381, computed once per session."""
    from metallo.correlate import pair_variant
    from metallo.correlate._evaluate import variant_tre

    key = (reverse, downsample, dtype)
    if key not in _VARIANTS:
        pair = pair_variant(coni_pair(shared_file), reverse=reverse, downsample=downsample, dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reg = register(pair.fixed, pair.moving)
        _VARIANTS[key] = variant_tre(reg, pair, reverse=reverse)
    return _VARIANTS[key]


@pytest.mark.slow
@pytest.mark.parametrize("downsample", [1, 2])
def test_coni_direction_and_quantisation_invariance(shared_file, downsample):
    """Issue 14: both directions, full and half size, native and 8-bit input.

    The reverse registration (EBSD fixed, BSE moving) is measured in the forward problem's fixed
    frame (BSE pixels, ``frame="moving"``), so the two directions are compared on the same pixels.
    """
    res = {(r, d): _variant(shared_file, r, downsample, d) for r in (False, True) for d in ("native", "uint8")}
    # Measured with both_ways="mean" (median / p95 px; start 9.79 / 16.17 at full size, 5.20 / 8.41
    # at half size):
    #   full  fwd native 2.32 / 6.54, uint8 2.56 / 8.07; rev native 2.24 / 6.58, uint8 2.74 / 8.30
    #   half  fwd native 2.57 / 7.79, uint8 2.69 / 8.01; rev native 2.74 / 7.79, uint8 2.71 / 7.95
    # Issue 14 asks p95 <= the start's everywhere: met. While the spline's anchors past the points
    # always kept the start (at half size they still do: 43-49 % of the first-pass matches agree
    # with one model, under the 50 % needed), the full-size p95 was 10.6-11.5 px and the half-size
    # 8-bit one 8.97 / 8.98, above the start. Forward/reverse medians within 1 px: met (largest gap
    # 0.18 px, 0.03 px before the reverse matches were checked in (x, y); with both_ways="gate"
    # 0.73 px, 8-bit full size, before this change).
    for key, v in res.items():
        assert v["result"]["p95"] <= v["start"]["p95"], key
        assert v["result"]["median"] <= v["start"]["median"] + 0.01, key
    for r in (False, True):
        assert res[(r, "native")]["result"]["median"] < 0.6 * res[(r, "native")]["start"]["median"], r
    for d in ("native", "uint8"):
        assert abs(res[(False, d)]["result"]["median"] - res[(True, d)]["result"]["median"]) < 0.5, d
    if downsample == 1:
        for r in (False, True):
            assert abs(res[(r, "native")]["result"]["median"] - res[(r, "uint8")]["result"]["median"]) < 1.0, r
        # Issue 14's median <= 2.5 px: 2.32 forward, 2.24 in reverse; the 8-bit copies stay below 3.8.
        assert max(res[(r, "native")]["result"]["median"] for r in (False, True)) <= 2.5
        assert max(v["result"]["p95"] for v in res.values()) <= 8.5  # issue 14: p95 <= 8 as given (6.54)
        assert max(v["result"]["median"] for v in res.values()) < 3.8


@pytest.mark.slow
def test_value_range_and_dtype_do_not_change_the_registration():
    """A linear rescale gives the same transform; an 8-bit copy one as accurate (known mapping)."""
    from correlate_helpers import make_pair, tre_px

    pair = make_pair(5, moving_shape=(120, 120), fixed_shape=(190, 190))
    unit = [(a - a.min()) / (a.max() - a.min()) for a in (pair.fixed, pair.moving)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = register(pair.fixed, pair.moving)
        scaled = register((unit[0] * 1000 + 7).astype(np.float32), unit[1] * 3)
        quantised = register(*[np.round(u * 255).astype(np.uint8) for u in unit])
    probe = pair.moving.y.values[::10]
    probe = np.stack(np.meshgrid(probe, probe), -1).reshape(-1, 2)
    np.testing.assert_allclose(scaled.transform_points(probe), ref.transform_points(probe), atol=1e-3)
    err_ref, err_q = np.median(tre_px(ref, pair)), np.median(tre_px(quantised, pair))
    # Measured: 0.75 px (float) and 0.73 px (8-bit) median against the known mapping.
    assert err_ref < 1.0 and err_q < 1.0
    assert abs(err_q - err_ref) < 0.2


@pytest.mark.slow
def test_both_ways_mean_gives_inverse_results_both_ways(tmp_path):
    """Issue 14 item 6: register(A, B) and register(B, A) run the same two registrations and agree.

    Known mapping (synthetic pair): both directions are accurate, and the forward result
    composed with the reverse one returns every fixed point to itself to far below a pixel.
    """
    from correlate_helpers import make_pair, tre_px

    pair = make_pair(7, moving_shape=(120, 120), fixed_shape=(170, 170))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fwd = register(pair.fixed, pair.moving, both_ways="mean")
        rev = register(pair.moving, pair.fixed, both_ways="mean")
    assert not fwd.quality["failed"] and not rev.quality["failed"]
    assert np.median(tre_px(fwd, pair)) < 1.0
    both = fwd.quality["both_ways"]
    assert both["mode"] == "mean" and set(both["weights"]) == {"agreed", "forward", "reverse", "start"}
    assert both["weights"]["agreed"] > 0.5  # the two directions agree over most of the field
    # The reverse registration is the inverse of the forward one (up to the averaging).
    g = fwd.fixed_grid
    q = g.points_xy()[:: 37]
    back = rev.fixed_to_moving_xy(fwd.fixed_to_moving_xy(q))
    inside = np.all((q > 8 * g.spacing_yx[1]) & (q < (np.array(g.shape[::-1]) - 8) * g.spacing_yx[1]), axis=1)
    round_trip = np.linalg.norm(back - q, axis=1)[inside] / g.spacing_yx[1]
    assert np.median(round_trip) < 0.1
    # The disagreement of the two single directions is reported, and is small here.
    assert fwd.quality["inverse_consistency_px"]["median"] < 1.0
    # The combined field goes to a text .tfm as a fitted B-spline, to an .h5 exactly.
    assert fwd.transform_type == "displacement+affine"
    for suffix, tol in ((".tfm", 0.1), (".h5", 1e-6)):
        again = Registration.load_tfm(fwd.save_tfm(tmp_path / f"t{suffix}"), fixed=pair.fixed, moving=pair.moving)
        assert np.abs(again.fixed_to_moving_xy(q[inside]) - fwd.fixed_to_moving_xy(q[inside])).max() / g.spacing_yx[1] < tol
    # both_ways="off" is the single forward registration (a spline on top of an affine).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = register(pair.fixed, pair.moving, both_ways="off")
    assert single.transform_type == "tps+affine" and "both_ways" not in single.quality


def test_combined_field_inverts_to_the_solution_inside_the_field():
    """A point near the border goes back to where the field puts it, not to a jump outside it.

    Known answer: the field moves every point 10 px down on top of an identity. A moving point
    10 px below the fixed field comes from the field's row 10 px higher. A field that is zero
    beyond its lattice (the ITK convention) also maps the row outside the field onto it (the
    bare identity there): the inversion stopped at that false solution on Slice381's lower edge.
    """
    from metallo.correlate._register import _field_lattice, _field_step
    from metallo.correlate._transform import AffineStep, DisplacementStep

    grid = Grid((100, 120), (0.5, 0.5))
    lattice = _field_lattice(grid)
    field = np.zeros((lattice.shape[0], lattice.shape[1], 2))
    field[..., 1] = 10 * 0.5
    identity = AffineStep(np.eye(2), np.zeros(2))
    q = np.array([[30.0, 54.5], [59.5, 53.0], [0.0, 50.0]])  # (x, y) µm; the field ends at y = 49.5
    expected = q - [0.0, 5.0]
    bare = Registration([DisplacementStep(field, lattice), identity], fixed_grid=grid, moving_grid=grid)
    assert np.abs(bare.moving_to_fixed_xy(q) - q).max() < 1e-9  # the false solution, outside the field
    cont = Registration([_field_step(field, lattice), identity], fixed_grid=grid, moving_grid=grid)
    np.testing.assert_allclose(cont.moving_to_fixed_xy(q), expected, atol=1e-6)
    inside = grid.points_xy()[::97]
    np.testing.assert_allclose(cont.fixed_to_moving_xy(inside), bare.fixed_to_moving_xy(inside), atol=1e-12)
    # A wild field (a failed registration) is padded by at most the lattice's longer side.
    wild = _field_step(np.full_like(field, 1e9), lattice)
    assert wild.field_xy.shape[0] <= lattice.shape[0] + 2 * max(lattice.shape)


def test_starts_apart_measures_the_round_trip_of_the_two_affine_starts():
    """Known answer: a reverse start that undoes the forward shift but for 1 µm is 2 px apart (0.5 µm pixels)."""
    from metallo.correlate._register import _starts_apart_px
    from metallo.correlate._transform import AffineStep

    grid = Grid((100, 120), (0.5, 0.5))
    forward = AffineStep(np.eye(2), np.array([3.0, 4.0]))
    assert _starts_apart_px([forward], [AffineStep(np.eye(2), np.array([-3.0, -4.0]))], grid) < 1e-9
    assert _starts_apart_px([forward], [AffineStep(np.eye(2), np.array([-2.0, -4.0]))], grid) == pytest.approx(2.0)
    # A reverse start turned half a circle about the field's centre: far apart at the corners.
    centre = np.array([59.5, 49.5]) * 0.5
    turned = AffineStep(-np.eye(2), 2 * centre)
    assert _starts_apart_px([forward], [turned], grid) > 100


def test_starts_are_averaged_unless_far_apart_or_cancelling():
    from metallo.correlate._register import _starts_apart_px, _starts_can_be_averaged
    from metallo.correlate._transform import AffineStep

    grid = Grid((100, 120), (0.5, 0.5))  # longer side 120 px: starts up to 12 px apart are averaged
    forward = AffineStep(np.eye(2), np.array([3.0, 4.0]))
    near = [AffineStep(np.eye(2), np.array([-3.0 + 4.5, -4.0]))]  # 9 px apart
    far = [AffineStep(np.eye(2), np.array([-3.0 + 7.0, -4.0]))]  # 14 px apart
    for reverse, expected in ((near, True), (far, False)):
        apart = _starts_apart_px([forward], reverse, grid)
        assert _starts_can_be_averaged([forward], reverse, grid, apart) is expected
    # Linear parts that cancel (a start turned half a circle) are never averaged, however near.
    turned = [AffineStep(-np.eye(2), np.array([-3.0, -4.0]))]
    assert not _starts_can_be_averaged([forward], turned, grid, 0.0)


def test_residual_map_says_nothing_near_the_moving_or_fixed_border():
    from metallo.correlate._register import _unverified_near_border

    fixed = Grid((100, 100), (1.0, 1.0))
    moving = Grid((60, 80), (1.0, 1.0), (20.0, 10.0))  # covers fixed y 20-79, x 10-89
    reg = Registration([], fixed_grid=fixed, moving_grid=moving)
    coarse = Grid((10, 10), (10.0, 10.0), (4.5, 4.5))
    out = _unverified_near_border(np.ones((10, 10)), coarse, reg, half_um=8.0)
    y, x = np.mgrid[:10, :10] * 10.0 + 4.5
    inside = (y - 19.5 >= 8) & (79.5 - y >= 8) & (x - 9.5 >= 8) & (89.5 - x >= 8)
    assert np.array_equal(np.isfinite(out), inside) and inside.sum() == 24  # 4 rows x 6 columns
    # A moving map larger than the fixed field: the fixed border alone (no block is centred
    # nearer to it than half a block) leaves the outer ring of cells (centres 5 µm in) unverified.
    wide = Registration([], fixed_grid=fixed, moving_grid=Grid((120, 120), (1.0, 1.0), (-10.0, -10.0)))
    out = _unverified_near_border(np.ones((10, 10)), coarse, wide, half_um=8.0)
    ring = (y < 8) | (y > 91) | (x < 8) | (x > 91)
    assert np.array_equal(np.isnan(out), ring) and int(np.isfinite(out).sum()) == 64


@pytest.mark.parametrize(
    "round_trip, agreed, reason",
    [(2.5, 0.80, None), (6.0, 0.90, "round trip"), (3.0, 0.64, "agree on 64%"), (2.46, 0.65, None), (2.0, 0.69, None),
     (1.4, None, None), (3.45, 0.745, "median round trip > 3"), (2.63, 0.684, None), (3.45, None, None)],
)
def test_verdict_on_the_two_directions(round_trip, agreed, reason):
    # Over the 60 grid variants (direction x size x dtype) of the five real pairs: Slice8_TFS at
    # half size agrees on 0.64-0.75 at round trips of 3.5-4.3 working px, with its p95 above the
    # start's in all six - failed now whatever the share (3.45 / 0.745 is its native forward copy);
    # NiAlMo's largest round trip is 2.63 px (0.684 agree; its reverse full-size copy).
    # Measured in 7 invisible-noise draws (benchmarks/correlate.py --stability): Slice381, median
    # TRE 2.3-2.6 px, round trips 1.4-2.5 px, agreement 0.80-0.89 - passed in every draw (the
    # former 2 px line failed 3 of them); Slice385 NiAlMo agrees on 0.65-0.78 at round trips of
    # 1.5-2.5 working px (its reverse 8-bit copy: 0.65 at 2.46); Slice8_TFS, whose directions fail
    # in different corners, on 0.45-0.64 at 3.0-5.6 working px - failed in every draw.
    quality = {
        "control_points": {"inliers": 300, "loo_px": {"median": 0.9}, "pass0_distinct": 100, "pass0_kept": 70, "work_factor": 1},
        "structure_ncc": 0.55, "overlap_fraction": 0.9, "inverse_consistency_px": {"median": round_trip},
    }
    if agreed is not None:
        quality["both_ways"] = {"weights": {"agreed": agreed, "forward": 0.1, "reverse": 0.05, "start": 0.05}}
    _assert_verdict(quality, reason)


def _assert_verdict(quality, reason):
    """Run the verdict on a quality record: failed exactly when ``reason`` is given, for that one reason."""
    from metallo.correlate._register import _verdict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _verdict(quality, None)  # type: ignore[arg-type]
    assert quality["failed"] is (reason is not None)
    if reason is not None:
        assert len(quality["failure_reasons"]) == 1 and reason in quality["failure_reasons"][0]


def test_sample_linear_matches_scipy_within_opencv_rounding():
    """OpenCV's bilinear samples: scipy's values to within the 1/32-px position rounding, and
    scipy's mode="constant" beyond the last pixel centres (no blend towards the fill)."""
    from scipy import ndimage as ndi

    from metallo.correlate._transform import sample_linear

    rng = np.random.default_rng(7)
    img = ndi.gaussian_filter(rng.random((60, 80)), 2)
    rows, cols = rng.uniform(-3, 62, 20000), rng.uniform(-3, 82, 20000)
    slope = np.abs(np.gradient(img)).max() * 2  # largest change per pixel, both axes
    got = sample_linear(img, rows, cols)
    np.testing.assert_allclose(got, ndi.map_coordinates(img, [rows, cols], order=1, mode="nearest"), atol=slope / 32)
    mask = rng.random((60, 80)) > 0.3
    got = sample_linear(mask, rows, cols, outside=0.0)
    want = ndi.map_coordinates(mask.astype(np.float32), [rows, cols], order=1, mode="constant", cval=0.0)
    np.testing.assert_allclose(got, want, atol=1 / 32 + 1e-6)
    beyond = (rows < 0) | (rows > 59) | (cols < 0) | (cols > 79)
    assert beyond.sum() > 1000 and np.all(got[beyond] == 0.0)


def test_block_statistics_from_summed_area_tables_equal_numpy():
    from metallo.correlate._auto import _window_mean, _window_std

    rng = np.random.default_rng(3)
    x = rng.random((90, 110)) * 4 + 100  # far from 0: the centred sums must keep the digits
    mask = rng.random((90, 110)) > 0.4
    top, left = np.array([0, 17, 50]), np.array([0, 33, 62])
    std = _window_std(x, top, left, 40)
    mean = _window_mean(mask, top, left, 30, 48)
    for i, t in enumerate(top):
        for j, c in enumerate(left):
            assert std[i, j] == pytest.approx(x[t : t + 40, c : c + 40].std(), rel=1e-9)
            assert mean[i, j] == pytest.approx(mask[t : t + 30, c : c + 48].mean(), abs=1e-12)


def test_fixed_point_inverse_stops_each_point_at_the_tolerance():
    """Points whose step fell below the tolerance leave the iteration; all solve p + d(p) = q."""
    from metallo.correlate._transform import _invert_displacement

    calls = []

    def apply(p):
        calls.append(len(p))
        # Steep (|grad d| = 0.8) only near x = 0: those points converge slowly.
        return p + 0.8 * np.exp(-p[:, :1] ** 2) * np.sin(p[:, ::-1]) + 0.05 * np.cos(p)

    q = np.random.default_rng(0).uniform(-1, 30, (2000, 2))
    p = _invert_displacement(apply, q)
    np.testing.assert_allclose(apply(p), q, atol=1e-7)
    assert calls[0] == len(q) and calls[-2] < len(q) / 10


def test_a_non_finite_sift_model_is_no_start(monkeypatch):
    """RANSAC on degenerate matches can return a non-finite affine. Before, judging its scale
    raised numpy's "SVD did not converge" out of ``register`` (Slice420's BSE cropped to its
    central 60 %); now such a model is no SIFT start and the others are used."""
    import cv2
    from correlate_helpers import make_pair

    from metallo.correlate._register import _plausible, _prepare, _sift_affine
    from metallo.correlate._transform import AffineStep

    assert not _plausible(AffineStep(np.full((2, 2), np.nan), np.zeros(2)))
    assert not _plausible(AffineStep(np.eye(2), np.array([np.inf, 0.0])))
    pair = make_pair(3, moving_shape=(120, 120), fixed_shape=(170, 170))
    fixed, moving = _prepare(pair.fixed, "fixed"), _prepare(pair.moving, "moving")
    step, info = _sift_affine(fixed, moving, ratio=0.8, transform="affine", ransac_px=3.0, max_side=512)
    assert step is not None and info["inliers"] > 0  # the real model, for contrast
    monkeypatch.setattr(cv2, "estimateAffine2D", lambda src, dst, **kw: (np.full((2, 3), np.nan), np.ones((len(src), 1), np.uint8)))
    step, info = _sift_affine(fixed, moving, ratio=0.8, transform="affine", ransac_px=3.0, max_side=512)
    assert step is None and info["inliers"] == 0


def test_nan_around_a_map_section_is_seen_as_its_darkest_value():
    """A map exported with NaN where nothing was measured around its section prepares like the
    same map filled with its darkest value, so its outline, where the measurement stops, is kept.
    An image with NaN almost everywhere still stops with the clear error."""
    from correlate_helpers import make_shadowed_map_pair
    from scipy import ndimage as ndi

    from metallo.correlate._register import _prepare
    from metallo.errors import RegistrationError

    _, moving, _, _ = make_shadowed_map_pair()
    labels, _ = ndi.label(moving == 58)
    around = labels == labels[0, 0]  # the fill around the section (58 also occurs inside it)
    zero = np.where(around, moving[~around].min(), moving).astype(np.float64)
    nan = np.where(around, np.nan, zero)
    a, b = _prepare(zero, "moving"), _prepare(nan, "moving")
    np.testing.assert_array_equal(a.valid, b.valid)
    np.testing.assert_array_equal(a.values, b.values)
    # NaN inside the section (a hole, not the surroundings) stays unmeasured.
    holed = zero.copy()
    holed[100:140, 150:200] = np.nan
    assert not _prepare(holed, "moving").valid[100:140, 150:200].any()
    mostly = np.full((100, 100), np.nan)
    mostly[40:44, 40:44] = 1.0
    with pytest.raises(RegistrationError, match="finite .and unmasked. pixels"):
        _prepare(mostly, "moving")


@pytest.mark.slow
def test_slice8_tfs_map_with_nan_around_its_section_registers_as_given(shared_file):
    """Slice8_TFS's map with NaN for its zero fill (36 % of the map). Before, the surroundings
    were unmeasured, the section's edge was no structure, the structure search won with a wrong
    start and the result ended 454 px off (flagged). Now it is the registration of the map as
    given (measured: 8.85 px median, as given 8.85; an affine through the points judged
    leave-one-out: 9.25)."""
    from scipy import ndimage as ndi

    tfs = tfs_pair(shared_file)
    m = np.asarray(tfs.moving, dtype=np.float32)
    labels, _ = ndi.label(m == 0)
    border = np.unique(np.r_[labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    m[np.isin(labels, border[border > 0])] = np.nan
    assert 0.3 < np.isnan(m).mean() < 0.4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = register(tfs.fixed, m)
    assert reg.quality["start"]["chosen"] == "outline"
    assert np.median(tre(reg, tfs.moving_yx, tfs.fixed_yx)) < point_baselines(tfs.moving_yx, tfs.fixed_yx)["affine_loo"]["median"]


@pytest.mark.slow
def test_given_points_map_the_result_when_the_gate_rejects_the_automatic_ones(shared_file):
    """Slice8_TFS with 9 of its 18 points given: its automatic matches are chance, the gate keeps
    the start, which is the spline through the given points. Before, the residual map was blank
    (the rejected points' map, blanked); now it is the given points' leave-one-out errors, as
    ``method="landmarks+tps"`` gives, and the record holds those errors."""
    from metallo.correlate._tps import fit_tps

    tfs = tfs_pair(shared_file)
    given = np.arange(0, 18, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = register(tfs.fixed, tfs.moving, landmarks=(tfs.moving_yx[given], tfs.fixed_yx[given]))
    assert reg.quality["gate"].startswith("rejected: the block matches are no more distinctive than chance")
    assert tre(reg, tfs.moving_yx[given], tfs.fixed_yx[given]).max() < 0.01  # still exact through them
    values = np.asarray(reg.quality["residual_map_px"]["values"], float)
    assert np.isfinite(values).mean() > 0.15  # measured 0.22: cells within 1.5 cells of a given point
    # Known answer: the closed-form leave-one-out errors of the same spline (x y order, pixels of 1 µm).
    m_xy, f_xy = tfs.moving_yx[given][:, ::-1].astype(float), tfs.fixed_yx[given][:, ::-1].astype(float)
    loo = reg.quality["landmark_loo_px"]
    assert loo["n"] == 9
    assert loo["median"] > 1.0  # noisy picks: leaving one out costs pixels
    # The map's cells average those errors: none is outside their range.
    assert np.nanmin(values) >= 0.0 and np.nanmax(values) <= loo["max"] + 1e-6
    # The left-out errors of the spline behind an affine are those of a plain TPS of the same points
    # when the affine is a near-identity in scale (Slice8_TFS: ~1.1), to within that scale.
    plain = fit_tps(f_xy, m_xy - f_xy).loo_error
    assert loo["median"] == pytest.approx(float(np.median(plain)), rel=0.35)


def test_a_direction_whose_matches_are_chance_is_no_local_candidate():
    """Where one direction's matches are evidence and the other's are chance, the spline is the
    evidenced direction alone, in both orders (coni16_459 at half size, 8-bit: 1.52 against 0.98 x
    chance; its chance direction had been taken around five points 14-15 px off)."""
    from metallo.correlate._register import (
        _DIRECTION_GAP,
        _GATE_MIN_DISTINCT,
        _combine_directions,
        _direction_with_evidence,
        _prepare,
    )
    from metallo.correlate._transform import AffineStep

    assert _direction_with_evidence(1.52, 0.98) == "forward" and _direction_with_evidence(0.98, 1.52) == "reverse"
    assert _direction_with_evidence(3.0, 2.2) is None  # both evidence: combined locally, as before
    assert _direction_with_evidence(1.1, 1.14) is None  # neither: the gate keeps the start
    assert _direction_with_evidence(float("nan"), 0.9) is None
    # Apart by less than the figure scatters between noise draws (coni16_459 full size, 1.17 against
    # 1.26): both take part as before; the barely-evidenced one alone had reached a p95 above the start's.
    assert _direction_with_evidence(1.17, 1.26) is None
    assert _direction_with_evidence(_GATE_MIN_DISTINCT - 0.01, _GATE_MIN_DISTINCT + _DIRECTION_GAP) == "reverse"

    rng = np.random.default_rng(3)
    img = ndi_blur(rng.random((120, 160)))
    fp, mp = _prepare(img, "fixed"), _prepare(img, "moving")
    # Forward shifts by (+3, 0) µm, the reverse registration (moving -> fixed) by (+1, +2): its
    # inverse maps fixed points by (-1, -2). They disagree by several pixels everywhere.
    fwd = Registration([AffineStep(np.eye(2), np.array([3.0, 0.0]))], fixed_grid=fp.grid, moving_grid=mp.grid)
    rev = Registration([AffineStep(np.eye(2), np.array([1.0, 2.0]))], fixed_grid=mp.grid, moving_grid=fp.grid)
    start = [AffineStep(np.eye(2), np.zeros(2))]
    pts = np.array([[20.0, 30.0], [80.0, 60.0], [140.0, 90.0]])  # fixed (x, y)
    for only, expected in (("forward", pts + [3.0, 0.0]), ("reverse", pts - [1.0, 2.0])):
        steps, info = _combine_directions(fwd, rev, start, fp, mp, mean=False, only=only)
        got = Registration(steps, fixed_grid=fp.grid, moving_grid=mp.grid).fixed_to_moving_xy(pts)
        np.testing.assert_allclose(got, expected, atol=0.05)
        assert info["weights"][only] == pytest.approx(1.0)


@pytest.mark.slow
def test_landmark_files_given_in_the_wrong_order_are_named(shared_file):
    """Fiji point files of MOVING and FIXED given the other way round: the verdict had failed the
    result (structure agreement 0.09) without saying why. Now a warning says they look swapped
    (Slice381: 0.51 exchanged against -0.00 as given); the right order gives no such warning,
    nor does Slice8_TFS's, whose structure agrees little either way."""
    pair = coni_pair(shared_file)
    with pytest.warns(UserWarning, match=r"the landmarks look swapped: the structure images agree 0\.5\d with the two point sets exchanged"):
        reg = register(pair.fixed, pair.moving, method="landmarks+tps", landmarks=(pair.fixed_yx, pair.moving_yx))
    order = reg.quality["landmark_order"]
    assert order["structure_ncc_swapped"] > order["structure_ncc_as_given"] + 0.4
    for p in (pair, tfs_pair(shared_file)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            register(p.fixed, p.moving, method="landmarks+tps", landmarks=(p.moving_yx, p.fixed_yx))
        assert not any("look swapped" in str(w.message) for w in caught)
