"""Cross-check against orix (GPL, test extra only) on the shared real maps."""

from __future__ import annotations

import numpy as np
import pytest

from metallo.ebsd import euler_to_quat, kam, misorientation_angle, phases_of
from metallo.ebsd._neighbours import neighbour_offsets, offset_pairs
from metallo.io import read_ebsd

orix = pytest.importorskip("orix")
from orix.quaternion import Orientation  # noqa: E402
from orix.quaternion.symmetry import D6h, Oh  # noqa: E402

POINT_GROUPS = {"m-3m": Oh, "6/mmm": D6h}
MAPS = ["ebsd_ang/sdss_ferrite_austenite.ang", "ebsd_ctf/mtex_twins_Mg.ctf"]


def _orix_angles(ebsd, a, b, sym):
    e = ebsd["euler"].values.reshape(-1, 3)
    oa = Orientation.from_euler(e[a], symmetry=POINT_GROUPS[sym])
    ob = Orientation.from_euler(e[b], symmetry=POINT_GROUPS[sym])
    return np.asarray(oa.angle_with(ob, degrees=True))


@pytest.mark.shared_data
@pytest.mark.parametrize("relative", MAPS)
def test_misorientation_angles_agree_with_orix(shared_file, relative):
    ebsd = read_ebsd(shared_file(relative))
    sym = phases_of(ebsd)[0]["symmetry"]
    phase = ebsd["phase"].values.ravel()
    a, b = offset_pairs(phase.reshape(ebsd["phase"].shape).shape, "square", (0, 1))
    keep = (phase[a] >= 0) & (phase[b] >= 0)
    a, b = a[keep][:5000], b[keep][:5000]
    q = euler_to_quat(ebsd["euler"].values.reshape(-1, 3))
    ours = misorientation_angle(q[a], q[b], symmetry=sym)
    np.testing.assert_allclose(ours, _orix_angles(ebsd, a, b, sym), atol=1e-3)


@pytest.mark.shared_data
@pytest.mark.parametrize("relative", MAPS)
def test_kam_agrees_with_orix_angles(shared_file, relative):
    ebsd = read_ebsd(shared_file(relative))
    sym = phases_of(ebsd)[0]["symmetry"]
    phase = ebsd["phase"].values.ravel()
    shape = ebsd["phase"].shape
    total = np.zeros(phase.size)
    count = np.zeros(phase.size)
    for off in neighbour_offsets(3, "square", half=False):
        a, b = offset_pairs(shape, "square", off)
        ok = (phase[a] >= 0) & (phase[a] == phase[b])
        a, b = a[ok], b[ok]
        ang = _orix_angles(ebsd, a, b, sym)
        use = ang <= 5.0
        np.add.at(total, a[use], ang[use])
        np.add.at(count, a[use], 1)
    with np.errstate(invalid="ignore"):
        expected = np.where((count > 0) & (phase >= 0), total / count, np.nan)
    ours = kam(ebsd, order=3, max_deg=5.0).values.ravel()
    np.testing.assert_allclose(ours, expected, atol=0.01, equal_nan=True)
