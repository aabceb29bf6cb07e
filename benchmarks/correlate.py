"""Benchmark: SIFT-started registration vs plain SimpleITK affine + B-spline (no SIFT start).

A synthetic specimen (metallo.synth) gives an EBSD image-quality map and a LOM micrograph of
about 2048 x 2048 pixels with a known affine + smooth deformation between them. Both methods
run on the CPU in the same process; the table reports wall time, the time ratio against the
baseline and the target registration error (TRE) over a dense grid of EBSD points, in LOM pixels.

    /work/venv/bin/python benchmarks/correlate.py [--quick]

``--quick`` uses a ~450 x 450 LOM. Results go to benchmarks/results/correlate.json.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from metallo.correlate import register
from metallo.synth import make_specimen


def tre(reg, spec, iq) -> np.ndarray:
    ys, xs = np.meshgrid(iq.y.values[::4], iq.x.values[::4], indexing="ij")
    pts = np.stack([ys.ravel(), xs.ravel()], 1)
    truth = spec.ebsd_to_lom(pts)
    return np.linalg.norm(reg.transform_points(pts) - truth, axis=1) / float(spec.lom.attrs["pixel_size_um"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images (~450 px) for a smoke run")
    args = parser.parse_args()
    if args.quick:
        spec = make_specimen(0)
    else:
        # EBSD 600 x 600 at 0.5 µm; the LOM covers ~1.33x that field at 0.195 µm -> ~2048 px.
        spec = make_specimen(0, ebsd_shape=(600, 600), lom_pixel_size_um=0.195, sem_pixel_size_um=0.5)
    iq = spec.ebsd["iq"]
    runs = {
        "metallo sift+bspline (default: blocks + MI)": dict(method="sift+bspline"),
        "metallo sift+bspline, deformable=blocks": dict(method="sift+bspline", deformable="blocks"),
        "metallo sift (affine only)": dict(method="sift"),
        "baseline SimpleITK affine+bspline (moments start, MI)": dict(method="affine+bspline", deformable="mi"),
    }
    rows = []
    for name, kw in runs.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reg = register(spec.lom, iq, **kw)
        seconds = time.perf_counter() - t0
        err = tre(reg, spec, iq)
        rows.append(
            {
                "method": name,
                "seconds": seconds,
                "tre_median_px": float(np.median(err)),
                "tre_p95_px": float(np.percentile(err, 95)),
                "initial": reg.quality.get("initial"),
                "inliers": reg.quality.get("inliers"),
            }
        )
    base = rows[-1]
    print(f"LOM {spec.lom.shape[0]} x {spec.lom.shape[1]} px, EBSD {iq.shape[0]} x {iq.shape[1]}; CPU only")
    print(f"{'method':58s} {'time s':>8s} {'x base':>7s} {'TRE med':>8s} {'TRE p95':>8s}")
    for r in rows:
        r["time_ratio_vs_baseline"] = r["seconds"] / base["seconds"]
        print(
            f"{r['method']:58s} {r['seconds']:8.1f} {r['time_ratio_vs_baseline']:7.2f} "
            f"{r['tre_median_px']:8.2f} {r['tre_p95_px']:8.2f}"
        )
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    payload = {"lom_shape": list(spec.lom.shape), "ebsd_shape": list(iq.shape), "quick": args.quick, "rows": rows}
    (out / "correlate.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
