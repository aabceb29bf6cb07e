"""Parent reconstruction on the real M1700 lath-martensite crop (TSL grain file)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metallo.ebsd import (
    clean,
    euler_to_quat,
    fit_orientation_relationship,
    misorientation_angle,
    orientation_relationship,
    reconstruct_parent,
)
from metallo.ebsd._parent import _best_pair
from metallo.io import read_ebsd

GF1 = "ebsd_martensite_pag/byu_M1700_martensite_cropped_gf1.txt"


def _high_angle_pairs(ebsd):
    """Edge-neighbour pairs with CI > 0.1 on both sides and a disorientation > 15 deg, and
    the smaller CI of each pair."""
    q = euler_to_quat(ebsd["euler"].values)
    ci = ebsd["ci"].values
    qa, qb, cmin = [], [], []
    for sa, sb in (((slice(None), slice(0, -1)), (slice(None), slice(1, None))),
                   ((slice(0, -1), slice(None)), (slice(1, None), slice(None)))):
        keep = (ci[sa] > 0.1) & (ci[sb] > 0.1) & (misorientation_angle(q[sa], q[sb]) > 15.0)
        qa.append(q[sa][keep])
        qb.append(q[sb][keep])
        cmin.append(np.minimum(ci[sa], ci[sb])[keep])
    return np.concatenate(qa), np.concatenate(qb), np.concatenate(cmin)


@pytest.mark.shared_data
def test_or_fit_and_reconstruction_on_real_martensite(shared_file):
    ebsd = read_ebsd(shared_file(GF1))
    fit = fit_orientation_relationship(ebsd)
    assert fit.method == "child-child" and fit.converged  # 17 iterations, from the GT start
    q = fit.misfit_quantiles_deg
    assert set(q) == {"q10", "q25", "q50", "q75", "q90"} and q["q50"] < 3.0
    # Between KS and NW, as lath martensite usually is (MTEX's martensite example: 2.3 deg from KS).
    assert 1.5 < fit.deviation_from_ks_deg < 4.5 and fit.deviation_from_nw_deg < 4.5
    p = fit.orientation_relationship.parallelism()  # measured: planes 1.3 deg, directions 3.0 deg
    assert p["plane_deviation_deg"] < 2.5 and 1.0 < p["direction_deviation_deg"] < 4.5
    qa, qb, ci = _high_angle_pairs(ebsd)
    assert qa.shape[0] == 1134  # the staging count in SOURCE.md (CI > 0.1 both, > 15 deg)
    explained = {}
    for name in ("KS", "NW", "GT", "fitted"):
        o = fit.orientation_relationship if name == "fitted" else orientation_relationship(name)
        f, _, _ = _best_pair(o.parent_candidates(qa), o.parent_candidates(qb))
        explained[name] = f < 5.0
    frac = {k: float(v.mean()) for k, v in explained.items()}
    assert frac["KS"] == pytest.approx(0.575, abs=0.005)  # SOURCE.md: 57.5 % within 5 deg of KS
    assert frac["NW"] == pytest.approx(0.387, abs=0.005)
    assert frac["GT"] == pytest.approx(0.769, abs=0.005)
    # Measured 0.781 (886 of 1,134): the issue asks >= 0.80, not reached. An OR fitted to this
    # criterion itself reaches 0.7998 at most (benchmarks/parent_real.py); see docs/parent.md.
    assert frac["fitted"] > max(frac["KS"], frac["NW"], frac["GT"]) and frac["fitted"] >= 0.78
    # What the unexplained pairs are: they rise with the CI of the pair (mis-indexed points),
    # and 30-45 deg, where no variant pair of an OR between KS and NW lies, holds 11 % of
    # the pairs and none is explained (a PAG boundary or noise).
    fitted = explained["fitted"]
    by_ci = [float(fitted[ci > c].mean()) for c in (0.1, 0.2, 0.3)]  # measured 0.781, 0.808, 0.862
    assert by_ci[0] < by_ci[1] < by_ci[2]
    ang = misorientation_angle(qa, qb)
    mid = (ang > 30) & (ang < 45)
    assert mid.sum() > 100 and fitted[mid].sum() == 0
    # The same on grain boundaries: > 15 deg between 5-deg grains of >= 3 points, weighted
    # by boundary length (measured 0.86; unweighted 0.77).
    from metallo.ebsd import _parent as P

    g = P._graph(ebsd, None, None, None, 5.0)
    o = fit.orientation_relationship
    ang = misorientation_angle(g.q[g.a], g.q[g.b])
    f, _, _ = _best_pair(o.parent_candidates(g.q[g.a]), o.parent_candidates(g.q[g.b]))
    sel = (ang > 15) & (g.area[g.a] >= 3) & (g.area[g.b] >= 3)
    assert (g.length[sel] * (f[sel] < 5)).sum() / g.length[sel].sum() > 0.8
    rec = reconstruct_parent(ebsd, fit)
    # The fitted OR's closest variants are 4.8 deg apart: refitted on variant grains.
    assert rec.or_fit.method == "child-child (variant grains)"
    quality = json.loads(rec.dataset.attrs["quality"])
    assert quality["reconstructed_fraction"] > 0.9
    assert quality["pixel_misfit_quantiles_deg"]["q50"] < 3.0
    # A few large PAGs, most cut by the edges; every parent has several packets.
    big = rec.parents[rec.parents["n_pixels"] > 500]
    assert 2 <= len(big) <= 12 and (big["n_packets"] >= 2).all()
    # Inside a reconstructed parent nearly every high-angle pair is a variant pair; across
    # PAG boundaries and in unreconstructed regions the OR explains them at about chance
    # (measured 0.99 / 0.24; chance 0.19): the unexplained fifth is not the OR's.
    flat = rec.dataset["parent_id"].values
    pa, pb = _high_angle_pixel_parents(ebsd, flat)
    o = rec.orientation_relationship
    f, _, _ = _best_pair(o.parent_candidates(qa), o.parent_candidates(qb))
    inside = (pa == pb) & (pa >= 0)
    across = (pa != pb) & (pa >= 0) & (pb >= 0)
    assert inside.sum() > 600 and (f[inside] < 5).mean() > 0.97
    assert across.sum() > 30 and (f[across] < 5).mean() < 0.4


def _high_angle_pixel_parents(ebsd, parent_id):
    """Parent ids on both sides of the pairs of :func:`_high_angle_pairs`, in its order."""
    q = euler_to_quat(ebsd["euler"].values)
    ci = ebsd["ci"].values
    pa, pb = [], []
    for sa, sb in (((slice(None), slice(0, -1)), (slice(None), slice(1, None))),
                   ((slice(0, -1), slice(None)), (slice(1, None), slice(None)))):
        keep = (ci[sa] > 0.1) & (ci[sb] > 0.1) & (misorientation_angle(q[sa], q[sb]) > 15.0)
        pa.append(parent_id[sa][keep])
        pb.append(parent_id[sb][keep])
    return np.concatenate(pa), np.concatenate(pb)


@pytest.mark.shared_data
def test_or_fit_record_counts_the_high_angle_pixel_pairs(shared_file):
    # With points below CI 0.1 unindexed, the fit record's pixel-pair fraction is the issue's
    # criterion on exactly the 1,134 pairs of SOURCE.md, under the OR fitted to that map.
    ebsd = clean(read_ebsd(shared_file(GF1)), min_ci=0.1, steps=("ci_threshold",))
    fit = fit_orientation_relationship(ebsd)
    assert fit.n_high_angle_pairs == 1134
    qa, qb, _ = _high_angle_pairs(read_ebsd(shared_file(GF1)))
    o = fit.orientation_relationship
    f, _, _ = _best_pair(o.parent_candidates(qa), o.parent_candidates(qb))
    assert fit.high_angle_explained_fraction == pytest.approx(float((f < 5).mean()), abs=1e-12)
    assert fit.high_angle_explained_fraction > 0.76  # measured 0.771 (3.3 deg from KS, 2.5 from NW)
    assert fit.to_dict()["n_high_angle_pairs"] == 1134


@pytest.mark.shared_data
def test_duplex_ferrite_austenite_map_is_no_parent_reconstruction(shared_file):
    # Super duplex stainless steel: ferrite and austenite side by side, not martensite and its
    # parent. Before the OR-support check the reconstruction said "passed" (82 % reconstructed,
    # counting the austenite points themselves) and reported a PAG size for it.
    ebsd = read_ebsd(shared_file("ebsd_ang/sdss_ferrite_austenite.ang"))
    with pytest.warns(UserWarning, match="does not look like a transformation product"):
        rec = reconstruct_parent(ebsd)
    q = json.loads(rec.dataset.attrs["quality"])
    assert not q["passed"]
    support = q["or_support"]
    assert not support["supported"] and support["basis"] == "child/child"
    assert support["explained_fraction"] < support["chance_fraction"] + 0.2  # measured 33 % against 22 %
    ferrite = ebsd["phase"].values == 2
    assert q["reconstructed_fraction"] == pytest.approx((rec.parent_ids[ferrite] >= 0).mean(), abs=1e-9)


@pytest.mark.shared_data
def test_pag_size_on_the_small_real_crop_is_marked_not_reliable(shared_file, tmp_path):
    # The M1700 crop holds 11 reconstructed parents, 8 cut by the map edge; the 3 interior ones
    # are 4-17 point fragments, so "mean ECD 0.32 µm" (beside a G that says ~6 µm) was printed
    # as the PAG size without a word of doubt.
    from typer.testing import CliRunner

    from metallo import names
    from metallo.cli import app
    from metallo.specimen import Specimen

    out = tmp_path / "m1700.h5"
    result = CliRunner().invoke(app, ["parent", str(shared_file(GF1)), "--specimen", str(out)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("PAG size")]
    assert len(lines) == 2 and all("NOT RELIABLE" in line and "edge grains" in line for line in lines)
    spec = Specimen.open(out)
    size = spec.table(names.quantity(names.parent(names.EBSD_MAP), names.GRAIN_SIZE))
    assert not size["reliable"].any() and (size["n_grains"] - size["n_edge_grains"] < 50).all()
    # The line gives the figure G rests on (E112's mean area 1/N_A), not the interior fragments' ECD.
    import re

    planimetric = size.set_index("method").loc["planimetric"]
    area = float(re.search(r"mean grain area 1/N_A ([\d.]+) µm²", lines[0]).group(1))
    assert area == pytest.approx(1e6 / planimetric["n_a_per_mm2"], rel=0.01) == pytest.approx(planimetric["mean_area_um2"], rel=0.01)
    # The child (martensite) grains of the same map are enough for E112's size statistic; for
    # E2627's they are too finely cut by the step (about 31 points per grain, not 500).
    child = spec.table(names.quantity(names.EBSD_MAP, names.GRAIN_SIZE)).set_index("method")
    e112 = child.loc[["planimetric", "intercept"]]
    assert e112["reliable"].all() and (e112["n_grains"] > 500).all()
    assert not child.loc["e2627", "reliable"] and child.loc["e2627", "mean_px_per_grain"] < 40
