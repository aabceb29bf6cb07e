"""Helpers shared by the EBSD tests (a uniquely named module: every test folder has a
``conftest``, so ``from conftest import ...`` would pick whichever was imported first)."""

from __future__ import annotations

import numpy as np

from metallo.ebsd import ebsd_dataset, quat_to_euler

CUBIC = [{"id": 1, "name": "ferrite", "symmetry": "m-3m", "lattice": [2.87, 2.87, 2.87, 90, 90, 90]}]


def map_from_quaternions(q: np.ndarray, phase: np.ndarray | None = None, *, step_um: float = 0.5,
                         phases=CUBIC, grid: str = "square", ci: np.ndarray | None = None):
    """An EBSD Dataset from a (ny, nx, 4) quaternion map."""
    ny, nx = q.shape[:2]
    if phase is None:
        phase = np.ones((ny, nx), dtype=np.int16)
    variables = {"ci": ci if ci is not None else np.full((ny, nx), 0.9)}
    return ebsd_dataset(quat_to_euler(q), phase, step_um=step_um, phases=phases, grid=grid, variables=variables)


_ORIX_SCRIPT = """
import sys
import numpy as np
from orix.quaternion import Orientation
from orix.quaternion import symmetry as S
data = np.load(sys.argv[1])
symmetry = {"-1": S.Ci, "2/m": S.Symmetry.from_generators(S.C2y, S.Ci), "2/m:z": S.C2h, "mmm": S.D2h,
            "4/m": S.C4h, "4/mmm": S.D4h, "-3": S.S6, "-3m": S.D3d, "6/m": S.C6h, "6/mmm": S.D6h,
            "m-3": S.Th, "m-3m": S.Oh}[sys.argv[2]]
a = Orientation.from_euler(data["a"], symmetry=symmetry)
b = Orientation.from_euler(data["b"], symmetry=symmetry)
np.save(sys.argv[3], np.asarray(a.angle_with(b, degrees=True)))
"""


def orix_misorientation_deg(euler_a: np.ndarray, euler_b: np.ndarray, laue: str, tmp_path) -> np.ndarray:
    """Disorientation angles (degrees) computed by orix, in a separate Python process.

    orix JIT-compiles numba functions on import; doing that inside a test process that has
    already loaded torch, OpenCV and SimpleITK crashed intermittently (segfault in numba's
    gufunc compile), so orix runs alone with numpy.
    """
    import importlib.util
    import os
    import subprocess
    import sys

    import pytest

    if importlib.util.find_spec("orix") is None:
        reason = "orix (GPL, test-only cross-check, in the [test] extra) is not installed"
        if os.environ.get("METALLO_REQUIRE_SHARED_DATA", "") == "1":
            # CI installs the [test] extra: a missing orix there is a broken install, not a skip.
            pytest.fail(f"{reason}; METALLO_REQUIRE_SHARED_DATA=1 makes this a failure", pytrace=False)
        pytest.skip(reason)
    inputs, output = tmp_path / "orix_in.npz", tmp_path / "orix_out.npy"
    np.savez(inputs, a=np.asarray(euler_a, float), b=np.asarray(euler_b, float))
    proc = subprocess.run([sys.executable, "-c", _ORIX_SCRIPT, str(inputs), laue, str(output)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.load(output)
