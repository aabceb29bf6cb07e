"""Registration transforms: evaluation vs SimpleITK, warp, inverse, storage, .tfm."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from metallo._xarray import image_dataarray
from metallo.correlate import Grid, Registration
from metallo.correlate._transform import AffineStep, BSplineStep
from metallo.errors import FormatError, RegistrationError


def _bspline_step(seed: int = 0, amplitude: float = 1.5) -> BSplineStep:
    img = sitk.Image(120, 100, sitk.sitkFloat32)
    img.SetSpacing((0.5, 0.5))
    tx = sitk.BSplineTransformInitializer(img, [4, 3], 3)
    rng = np.random.default_rng(seed)
    tx.SetParameters(rng.normal(0, amplitude, len(tx.GetParameters())).tolist())
    return BSplineStep.from_sitk(tx), tx


def _registration(amplitude: float = 1.5) -> Registration:
    step, _ = _bspline_step(0, amplitude)
    a = np.deg2rad(3.0)
    affine = AffineStep(1.1 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]), np.array([2.0, -1.0]))
    fixed = Grid((100, 120), (0.5, 0.5))
    moving = Grid((90, 110), (0.6, 0.6))
    return Registration([step, affine], fixed_grid=fixed, moving_grid=moving, method="test")


def test_bspline_evaluation_matches_simpleitk():
    step, tx = _bspline_step(3)
    pts = np.random.default_rng(1).uniform(-5, 65, (500, 2))
    expected = np.array([tx.TransformPoint(tuple(p)) for p in pts])
    np.testing.assert_allclose(step.apply(pts), expected, atol=1e-9)


def test_transform_points_is_moving_to_fixed():
    g = Grid((10, 10), (1.0, 1.0))
    # ITK direction: fixed point (x=0) maps to moving x=2; so moving x=5 comes from fixed x=3.
    reg = Registration([AffineStep(np.eye(2), np.array([2.0, 0.0]))], fixed_grid=g, moving_grid=g)
    np.testing.assert_allclose(reg.transform_points(np.array([[1.0, 5.0]])), [[1.0, 3.0]])
    np.testing.assert_allclose(reg.fixed_to_moving(np.array([[1.0, 3.0]])), [[1.0, 5.0]])


def test_point_round_trip_through_bspline_inverse():
    reg = _registration()
    pts = np.random.default_rng(2).uniform(5, 45, (300, 2))
    back = reg.fixed_to_moving(reg.transform_points(pts))
    np.testing.assert_allclose(back, pts, atol=1e-6)


def test_warp_matches_simpleitk_resample():
    reg = _registration()
    rng = np.random.default_rng(4)
    from scipy import ndimage as ndi

    moving = ndi.gaussian_filter(rng.random((90, 110)), 3).astype(np.float64)
    m_img = sitk.GetImageFromArray(moving)
    m_img.SetSpacing((0.6, 0.6))
    f_img = sitk.Image(120, 100, sitk.sitkFloat64)
    f_img.SetSpacing((0.5, 0.5))
    expected = sitk.GetArrayFromImage(sitk.Resample(m_img, f_img, reg.to_sitk(), sitk.sitkLinear, -1.0))
    got = reg.warp(moving, interpolation="linear", fill_value=-1.0).values
    inner = (expected != -1.0) & (got != -1.0)
    assert inner.mean() > 0.6
    np.testing.assert_allclose(got[inner], expected[inner], atol=1e-6)


def test_warp_labels_keep_values_and_fill():
    reg = _registration()
    rng = np.random.default_rng(5)
    labels = rng.choice(np.array([0, 3, 7], dtype=np.uint8), size=(90, 110))
    out = reg.warp(labels, interpolation="nearest", fill_value=255)
    assert out.dtype == np.uint8
    assert set(np.unique(out.values)) <= {0, 3, 7, 255}
    assert (out.values == 255).any() and (out.values != 255).mean() > 0.5
    assert out.attrs["pixel_size_um"] == 0.5 and out.shape == (100, 120)
    # Default for integer 2-D input is nearest too.
    np.testing.assert_array_equal(reg.warp(labels, fill_value=255).values, out.values)


def test_warp_shift_known_answer_and_rgb():
    g = Grid((4, 5), (1.0, 1.0))
    reg = Registration([AffineStep(np.eye(2), np.array([1.0, 0.0]))], fixed_grid=g, moving_grid=g)
    img = np.arange(20, dtype=np.float32).reshape(4, 5)
    out = reg.warp(img, fill_value=-1).values
    np.testing.assert_array_equal(out[:, :4], img[:, 1:])
    assert (out[:, 4] == -1).all()
    rgb = np.stack([img, 2 * img, 3 * img], axis=2)
    out_rgb = reg.warp(rgb).values
    assert out_rgb.shape == (4, 5, 3)
    np.testing.assert_array_equal(out_rgb[:, :4, 2], 3 * img[:, 1:])


def test_warp_dataarray_on_its_own_grid():
    # A label map at half the moving resolution over the same field lands in the same place.
    g = Grid((8, 8), (1.0, 1.0))
    reg = Registration([AffineStep(np.eye(2), np.zeros(2))], fixed_grid=g, moving_grid=g)
    coarse = image_dataarray(np.array([[1, 2], [3, 4]], dtype=np.uint8).repeat(2, 0).repeat(2, 1), pixel_size_um=2.0)
    out = reg.warp(coarse).values
    assert out[0, 0] == 1 and out[0, 7] == 2 and out[7, 0] == 3 and out[7, 7] == 4


def test_warp_errors():
    reg = _registration()
    with pytest.raises(RegistrationError, match="label dtype"):
        reg.warp(np.zeros((90, 110), np.uint8), interpolation="nearest", fill_value=-1)
    with pytest.raises(RegistrationError, match="shape"):
        reg.warp(np.zeros((10, 10)))
    with pytest.raises(RegistrationError, match=r"\(of \(4, 90, 110\)\).*a stack \(n, y, x\) of moving images"):
        reg.warp(np.zeros((4, 90, 110)))
    with pytest.raises(RegistrationError, match="NaN"):
        reg.warp(np.full((90, 110), np.nan))


def test_inverse_round_trip_within_a_pixel():
    reg = _registration()
    inv = reg.inverse()
    assert inv.fixed_grid == reg.moving_grid
    pts = np.random.default_rng(6).uniform(8, 40, (400, 2))  # fixed (y, x) µm inside the field
    moving_pts = reg.fixed_to_moving(pts)
    # inverse().transform_points maps its moving (= our fixed) space to our moving space.
    err = np.linalg.norm(inv.transform_points(pts) - moving_pts, axis=1) / 0.5
    assert err.max() < 0.1
    # Warping there and back keeps labels in place (within one pixel at boundaries).
    labels = (np.indices((100, 120)).sum(0) // 15 % 2).astype(np.uint8)
    there = reg.inverse().warp(labels, fill_value=255)
    back = reg.warp(there, fill_value=255).values
    ok = back != 255
    assert (back[ok] == labels[ok]).mean() > 0.97
    # the affine part inverts exactly
    affine = Registration([reg.steps[1]], fixed_grid=reg.fixed_grid, moving_grid=reg.moving_grid)
    np.testing.assert_allclose(affine.inverse().inverse().steps[0].matrix, reg.steps[1].matrix, atol=1e-12)


def test_dataset_round_trip():
    reg = _registration()
    reg.quality = {"inliers": 12, "mi_after": 1.2, "tre_px": {"median": 0.3}}
    ds = reg.to_dataset()
    assert ds.attrs["transform_type"] == "bspline+affine"
    for key in ("fixed", "moving", "quality"):
        assert key in ds.attrs
    back = Registration.from_dataset(ds)
    pts = np.random.default_rng(7).uniform(0, 50, (50, 2))
    np.testing.assert_allclose(back.fixed_to_moving(pts), reg.fixed_to_moving(pts), atol=1e-12)
    assert back.quality["inliers"] == 12
    inv_ds = reg.inverse().to_dataset()
    inv = Registration.from_dataset(inv_ds)
    np.testing.assert_allclose(inv.fixed_to_moving(pts[:5] + 5), reg.inverse().fixed_to_moving(pts[:5] + 5), atol=1e-12)


def test_tfm_export_reimported_by_simpleitk(tmp_path):
    reg = _registration()
    path = reg.save_tfm(tmp_path / "t.tfm")
    tx = sitk.ReadTransform(str(path))
    pts_xy = np.random.default_rng(8).uniform(0, 60, (200, 2))
    itk = np.array([tx.TransformPoint(tuple(p)) for p in pts_xy])
    np.testing.assert_allclose(itk, reg.fixed_to_moving_xy(pts_xy), atol=1e-6)
    back = Registration.load_tfm(path, fixed=reg.fixed_grid, moving=reg.moving_grid)
    np.testing.assert_allclose(back.fixed_to_moving_xy(pts_xy), reg.fixed_to_moving_xy(pts_xy), atol=1e-6)


def test_tfm_errors(tmp_path):
    reg = _registration()
    bad = tmp_path / "bad.tfm"
    bad.write_text("not a transform\n")
    with pytest.raises(FormatError, match="bad.tfm"):
        Registration.load_tfm(bad, fixed=reg.fixed_grid, moving=reg.moving_grid)


def test_stored_in_a_specimen_and_read_back(tmp_path):
    from metallo.specimen import Specimen

    reg = _registration()
    reg.quality = {"inliers": 30, "mi_after": 1.1}
    spec = Specimen.create(tmp_path / "s.h5", specimen_id="S1")
    spec.add("registration/lom_ebsd", reg.to_dataset(), step="correlate.register", parameters={"method": "test"})
    spec.save()
    back = Registration.from_dataset(Specimen.open(tmp_path / "s.h5")["registration/lom_ebsd"])
    pts = np.random.default_rng(9).uniform(0, 50, (50, 2))
    np.testing.assert_allclose(back.fixed_to_moving(pts), reg.fixed_to_moving(pts), atol=1e-9)
    assert back.quality["inliers"] == 30


def test_inverse_exports_as_h5(tmp_path):
    reg = _registration()
    inv = reg.inverse()
    path = inv.save_tfm(tmp_path / "inv.h5")
    back = Registration.load_tfm(path, fixed=inv.fixed_grid, moving=inv.moving_grid)
    pts = np.random.default_rng(10).uniform(5, 40, (50, 2))
    np.testing.assert_allclose(back.fixed_to_moving(pts), inv.fixed_to_moving(pts), atol=1e-6)
    # A text .tfm holds no dense field: the field goes as a fitted cubic B-spline, a small
    # fraction of a pixel (0.6 µm here) off inside the field.
    text = Registration.load_tfm(inv.save_tfm(tmp_path / "inv.tfm"), fixed=inv.fixed_grid, moving=inv.moving_grid)
    assert "bspline" in text.transform_type
    assert np.abs(text.fixed_to_moving(pts) - inv.fixed_to_moving(pts)).max() < 0.05


def test_checkerboard_and_overlay_figure(tmp_path):
    from metallo.correlate import checkerboard, overlay_figure

    board = checkerboard(np.zeros((6, 6)), np.ones((6, 6)), squares=3)
    np.testing.assert_array_equal(board[::2, ::2], [[0, 1, 0], [1, 0, 1], [0, 1, 0]])
    reg = _registration()
    rng = np.random.default_rng(13)
    path = overlay_figure(reg, rng.random((100, 120)), rng.random((90, 110)), tmp_path / "o.png")
    assert path.stat().st_size > 10_000
    # A registration flagged failed says so on the figure a user looks at, with the first reason.
    from metallo.correlate._figures import _title

    assert "FAILED" not in _title(reg)[0]
    reg.quality.update(failed=True, failure_reasons=["the structure images agree poorly after registration (NCC 0.03 < 0.3)"])
    title, failed = _title(reg)
    assert failed and "REGISTRATION FAILED" in title and "NCC 0.03" in title
    # A long reason is wrapped onto lines the figure holds, its end (the numbers) kept.
    long = ("forward and inverse registrations disagree on 36% of the overlap (agree on 64% < 66.5%) by 6.8 px "
            "(median round trip > 5.5); where they disagree the result follows whichever matches the structure best "
            "there - see the residual map")
    reg.quality.update(failure_reasons=[long])
    lines = _title(reg)[0].split("\n")
    assert len(lines) == 3 and max(map(len, lines[1:])) <= 150 and "see the residual map" in lines[-1]


def test_residual_figure_stripes_exactly_the_unverified_cells(tmp_path):
    from metallo.correlate import residual_figure
    from metallo.correlate._auto import residual_map
    from metallo.correlate._figures import _unverified_pixels
    from metallo.errors import RegistrationError

    reg = _registration()  # fixed field 100 x 120 px at 0.5 µm
    with pytest.raises(RegistrationError, match="no residual map"):
        residual_figure(reg, np.zeros((100, 120)), tmp_path / "r.png")
    # Points only in the left half of the field: cells farther than the kernel from all are NaN.
    rng = np.random.default_rng(3)
    pts = np.c_[rng.uniform(0, 25, 40), rng.uniform(0, 50, 40)]  # x, y in µm
    values, grid = residual_map(pts, np.full(40, 1.5), reg.fixed_grid, cells=12)
    assert np.isnan(values).any() and np.isfinite(values).any()
    reg.quality["residual_map_px"] = {"values": values, "grid": grid.to_dict()}
    path = residual_figure(reg, rng.random((100, 120)), tmp_path / "r.png", points_yx=np.array([[10.0, 10.0]]),
                           errors_px=np.array([3.0]))
    assert path.stat().st_size > 10_000
    # The striped pixels are those whose cell is NaN: each cell is 10 x 10 fixed pixels here.
    edges = (-0.5, -0.5 + 10 * values.shape[0], -0.5, -0.5 + 10 * values.shape[1])
    stripes = _unverified_pixels(values, edges, (100, 120))
    np.testing.assert_array_equal(stripes, np.kron(np.isnan(values), np.ones((10, 10), bool))[:100, :120])
    # Large images are drawn from every step-th pixel: the same cells, sampled.
    np.testing.assert_array_equal(_unverified_pixels(values, edges, (34, 40), step=3), stripes[::3, ::3])


def test_inverse_tps_step_is_the_exact_inverse_and_round_trips_storage(tmp_path):
    from metallo.correlate._tps import fit_tps
    from metallo.correlate._transform import InverseTPSStep

    rng = np.random.default_rng(4)
    moving = rng.uniform(0, 200, (30, 2))
    # moving -> fixed: a 20 % scale difference, a rotation and a smooth bend.
    rot = np.array([[np.cos(0.2), -np.sin(0.2)], [np.sin(0.2), np.cos(0.2)]]) * 1.2
    fixed = moving @ rot.T + 5 + 3 * np.sin(moving[:, ::-1] / 40)
    step = InverseTPSStep(fit_tps(moving, fixed - moving).step)
    # fixed -> moving by Newton's method, through the points exactly and consistently elsewhere.
    np.testing.assert_allclose(step.apply(fixed), moving, atol=1e-6)
    q = rng.uniform(0, 250, (50, 2))
    np.testing.assert_allclose(step.apply_inverse(step.apply(q)), q, atol=1e-6)
    # Many points: the lattice evaluation agrees with the direct solve to far below a pixel.
    g = Grid((120, 140), (2.0, 2.0))
    dense = g.points_xy()
    assert np.abs(step.apply(dense)[::97] - step.apply(dense[::97])).max() < 0.05
    reg = Registration([step], fixed_grid=g, moving_grid=g)
    again = Registration.from_dataset(reg.to_dataset())
    assert again.transform_type == "tps_inverse"
    np.testing.assert_allclose(again.fixed_to_moving_xy(q), reg.fixed_to_moving_xy(q), atol=1e-9)
    loaded = Registration.load_tfm(reg.save_tfm(tmp_path / "t.tfm"), fixed=g, moving=g)
    inner = dense[::53][np.all((dense[::53] > 10) & (dense[::53] < 230), axis=1)]
    assert np.abs(loaded.fixed_to_moving_xy(inner) - reg.fixed_to_moving_xy(inner)).max() < 0.1


def test_images_read_from_files_are_named_by_their_file():
    # Titles and provenance say "Slice381_ebsd.tif -> Slice381_bse.tif", not "image -> image".
    from metallo._xarray import image_dataarray
    from metallo.correlate._register import _prepare

    img = np.random.default_rng(0).random((20, 20))
    assert _prepare(image_dataarray(img, name="image", attrs={"source": "bse.tif"}), "fixed").name == "bse.tif"
    assert _prepare(image_dataarray(img, name="iq"), "moving").name == "iq"
    assert _prepare(img, "moving").name == "moving"


def test_bspline_fit_direct_solution_equals_lsqr(monkeypatch):
    """The normal equations solved by sparse LU give LSQR's least-squares coefficients, and a
    smooth field is followed closely."""
    from metallo.correlate import _transform
    from metallo.correlate._transform import fit_bspline

    g = Grid((120, 150), (1.0, 1.0))
    sub = Grid((30, 38), (4.0, 4.0))
    pts = sub.points_xy()
    field = np.stack([3 * np.sin(pts[:, 0] / 25), 2 * np.cos(pts[:, 1] / 30)], axis=1)
    direct = fit_bspline(pts, field, g, spacing_um=8.0, smoothness=1e-4)
    monkeypatch.setattr(_transform, "_BSPLINE_DIRECT_MAX", 0)
    iterative = fit_bspline(pts, field, g, spacing_um=8.0, smoothness=1e-4)
    np.testing.assert_allclose(direct.coefficients, iterative.coefficients, atol=1e-5)
    inner = (pts[:, 0] > 8) & (pts[:, 0] < 140) & (pts[:, 1] > 8) & (pts[:, 1] < 110)
    assert np.abs(direct.displacement(pts[inner]) - field[inner]).max() < 0.01


def test_tfm_export_warns_where_the_bspline_cannot_follow_the_field(tmp_path):
    """A dense field with a sharp 10-px bump cannot be written as 8-px B-splines: the .tfm
    export says how far off it is; a smooth field and the exact .h5 export say nothing."""
    import warnings

    from metallo.correlate._transform import DisplacementStep

    g = Grid((100, 120), (1.0, 1.0))
    yy, xx = np.mgrid[0:100, 0:120].astype(float)
    smooth = np.stack([2 * np.sin(xx / 30), 1.5 * np.cos(yy / 25)], axis=-1)
    bump = smooth.copy()
    bump[48:52, 58:62, 0] += 10.0
    messages = {}
    for field, path in ((smooth, "s.tfm"), (bump, "b.tfm"), (bump, "b.h5")):
        reg = Registration([DisplacementStep(field, g), AffineStep(np.eye(2), np.zeros(2))], fixed_grid=g, moving_grid=g)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reg.save_tfm(tmp_path / path)
        messages[path] = [str(w.message) for w in caught if "departs from the registration" in str(w.message)]
    assert messages["s.tfm"] == [] and messages["b.h5"] == []
    (said,) = messages["b.tfm"]
    worst = float(said.split("by up to ")[1].split(" px")[0])
    assert 5.0 < worst <= 10.5 and "an .h5 file holds the field exactly" in said
