"""Cross-check against orix (GPL, test extra only) on the shared real maps.

orix runs in its own process (see ``ebsd_helpers.orix_misorientation_deg``).
"""

from __future__ import annotations

import numpy as np
import pytest
from ebsd_helpers import orix_misorientation_deg

from metallo.ebsd import euler_to_quat, kam, misorientation_angle, phases_of
from metallo.ebsd._neighbours import neighbour_offsets, offset_pairs
from metallo.io import read_ebsd

MAPS = ["ebsd_ang/sdss_ferrite_austenite.ang", "ebsd_ctf/mtex_twins_Mg.ctf"]


@pytest.mark.shared_data
@pytest.mark.parametrize("relative", MAPS)
def test_misorientation_angles_agree_with_orix(shared_file, relative, tmp_path):
    ebsd = read_ebsd(shared_file(relative))
    sym = phases_of(ebsd)[0]["symmetry"]
    phase = ebsd["phase"].values.ravel()
    a, b = offset_pairs(phase.reshape(ebsd["phase"].shape).shape, "square", (0, 1))
    keep = (phase[a] >= 0) & (phase[b] >= 0)
    a, b = a[keep][:5000], b[keep][:5000]
    euler = ebsd["euler"].values.reshape(-1, 3)
    q = euler_to_quat(euler)
    ours = misorientation_angle(q[a], q[b], symmetry=sym)
    np.testing.assert_allclose(ours, orix_misorientation_deg(euler[a], euler[b], sym, tmp_path), atol=1e-3)


@pytest.mark.shared_data
@pytest.mark.parametrize("relative", MAPS)
def test_kam_agrees_with_orix_angles(shared_file, relative, tmp_path):
    ebsd = read_ebsd(shared_file(relative))
    sym = phases_of(ebsd)[0]["symmetry"]
    phase = ebsd["phase"].values.ravel()
    shape = ebsd["phase"].shape
    pairs = []
    for off in neighbour_offsets(3, "square", half=False):
        a, b = offset_pairs(shape, "square", off)
        ok = (phase[a] >= 0) & (phase[a] == phase[b])
        pairs.append((a[ok], b[ok]))
    a_all = np.concatenate([a for a, _ in pairs])
    b_all = np.concatenate([b for _, b in pairs])
    euler = ebsd["euler"].values.reshape(-1, 3)
    ang = orix_misorientation_deg(euler[a_all], euler[b_all], sym, tmp_path)
    use = ang <= 5.0
    total = np.bincount(a_all[use], weights=ang[use], minlength=phase.size)
    count = np.bincount(a_all[use], minlength=phase.size)
    with np.errstate(invalid="ignore"):
        expected = np.where((count > 0) & (phase >= 0), total / count, np.nan)
    ours = kam(ebsd, order=3, max_deg=5.0).values.ravel()
    np.testing.assert_allclose(ours, expected, atol=0.01, equal_nan=True)
