"""Benchmark: writing an automatic registration as an ITK ``.tfm`` file, against the iterative solver it replaced.

A text ``.tfm`` file holds neither a thin-plate spline nor a dense displacement field, so
``Registration.save_tfm`` writes cubic B-splines fitted to them (control points every 8 fixed
pixels). The fit is a sparse least-squares problem; metallo solves its normal equations by a
sparse LU factorisation (``_transform._least_squares``). The baseline is LSQR on the same system
(what metallo used before, tolerance 1e-10, at most 5000 iterations), run in the same process on
the same field. Both are timed (CPU and wall seconds), their coefficients compared, and the
written file's departure from the registration (read back, every second pixel) reported.

    python benchmarks/tfm_export.py [--data ../shared/data]

Results go to benchmarks/results/tfm_export.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from correlate import PAIRS, load_pair  # benchmarks/correlate.py: the real pairs and their files

from metallo.correlate import _transform, register
from metallo.correlate._transform import (
    DisplacementStep,
    Grid,
    Registration,
    _bspline_approximation,
)


def _dense_grid(step: DisplacementStep, fixed: Grid) -> Grid:
    """The fixed-pixel grid over the field's lattice, as ``save_tfm`` builds it."""
    g = step.grid
    factor = np.array(g.spacing_yx) / np.array(fixed.spacing_yx)
    n = np.ceil((np.array(g.shape) - 1) * factor).astype(int) + 1
    return Grid((int(n[0]), int(n[1])), fixed.spacing_yx, g.origin_yx, g.pixel_size_known)


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def run_pair(data: Path, name: str, out_dir: Path) -> dict:
    pair = load_pair(data, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = register(pair.fixed, pair.moving)
    step = next(s for s in reg.steps if isinstance(s, DisplacementStep))
    dense = _dense_grid(step, reg.fixed_grid)
    direct, cpu_d, wall_d = _timed(lambda: _bspline_approximation(step, dense, 8.0))
    saved = _transform._BSPLINE_DIRECT_MAX
    _transform._BSPLINE_DIRECT_MAX = 0  # the LSQR path for every size
    try:
        iterative, cpu_i, wall_i = _timed(lambda: _bspline_approximation(step, dense, 8.0))
    finally:
        _transform._BSPLINE_DIRECT_MAX = saved
    pts = reg.fixed_grid.points_xy()[::3]
    px = float(reg.fixed_grid.spacing_yx[1])
    field = step.displacement(pts)
    off = {
        label: np.linalg.norm(b.displacement(pts) - field, axis=1) / px for label, b in (("direct", direct), ("lsqr", iterative))
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, cpu_s, wall_s = _timed(lambda: reg.save_tfm(out_dir / f"{name}.tfm"))
    written = Registration.load_tfm(out_dir / f"{name}.tfm", fixed=reg.fixed_grid, moving=reg.moving_grid)
    file_off = np.linalg.norm(written.fixed_to_moving_xy(pts) - reg.fixed_to_moving_xy(pts), axis=1) / px
    row = {
        "pair": name,
        "coefficients": int(direct.coefficients[0].size),
        "direct_cpu_s": cpu_d, "direct_wall_s": wall_d,
        "lsqr_cpu_s": cpu_i, "lsqr_wall_s": wall_i,
        "speedup_wall": wall_i / wall_d,
        "coefficient_difference_max": float(np.abs(direct.coefficients - iterative.coefficients).max()),
        "fit_departure_px": {k: {"median": float(np.median(v)), "max": float(v.max())} for k, v in off.items()},
        "save_tfm_wall_s": wall_s, "save_tfm_cpu_s": cpu_s,
        "file_departure_px": {"median": float(np.median(file_off)), "p99": float(np.percentile(file_off, 99)), "max": float(file_off.max())},
        "warnings": [str(w.message)[:200] for w in caught],
    }
    print(
        f"{name}: {row['coefficients']} coefficients; direct {wall_d:.2f} s, LSQR {wall_i:.2f} s wall "
        f"({row['speedup_wall']:.1f}x); coefficients differ by {row['coefficient_difference_max']:.1e}; "
        f"file off by up to {row['file_departure_px']['max']:.2f} px; warned: {bool(caught)}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="shared data folder (default ../shared/data next to the repository)")
    args = parser.parse_args()
    data = Path(args.data) if args.data else Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        rows = [run_pair(data, name, Path(scratch)) for name in PAIRS]
    (out / "tfm_export.json").write_text(json.dumps({"rows": rows}, indent=2, default=float))
    print(f"saved {out / 'tfm_export.json'}")


if __name__ == "__main__":
    main()
