"""Register two images with metallo.correlate alone, without any Specimen.

    python examples/register_only.py FIXED MOVING [--out DIR] [--grid-um 20]

The default method is ``auto`` (automatic control points, a smoothing thin-plate spline and a
quality verdict: ``quality.json`` says ``"failed": true`` where the warp cannot be trusted).
With no images given, it makes a synthetic pair (an EBSD image-quality map and the LOM
micrograph of the same area, see metallo.synth) and also reports the error against the known
transform. Writes the warped image, an overlay figure, the ITK transform (.tfm) and the quality
metrics (JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import metallo as mt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fixed", nargs="?", help="fixed image (e.g. the micrograph)")
    parser.add_argument("moving", nargs="?", help="moving image (e.g. the EBSD IQ map)")
    parser.add_argument("--out", default="register-only", help="output folder")
    parser.add_argument("--method", default="auto", choices=mt.correlate.method_names(),
                        help="registration method (default auto: automatic control points, judged)")
    parser.add_argument("--grid-um", type=float, default=None, help="B-spline control-point spacing in µm (B-spline methods)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    truth = None
    if args.fixed and args.moving:
        fixed = mt.io.read_image(args.fixed)
        moving = mt.io.read_image(args.moving)
    else:
        sample = mt.synth.make_specimen(seed=1)
        fixed, moving = sample.lom, mt.ebsd.map_image(sample.ebsd, "iq")
        truth = sample

    if args.grid_um is not None and "bspline" not in args.method:
        parser.error(f"--grid-um is the B-spline spacing; method {args.method!r} has no B-spline")
    reg = mt.correlate.register(fixed, moving, method=args.method, grid_um=args.grid_um)
    warped = reg.warp(moving, interpolation="linear")
    mt.io.write_image(warped.astype(np.float32), out / "warped.tif")
    reg.save_tfm(out / "transform.tfm")
    mt.correlate.overlay_figure(reg, fixed, moving, out / "overlay.png")
    if "residual_map_px" in reg.quality:  # where to trust the warp (expected error per region)
        mt.correlate.residual_figure(reg, fixed, out / "residual_map.png")
    if reg.control_points is not None:  # the automatic points, for BigWarp/Fiji and for inspection
        reg.control_points.write_bigwarp(out / "control_points.csv")
    quality = dict(reg.quality)
    if truth is not None:
        ys, xs = np.meshgrid(moving.y.values[5:-5:7], moving.x.values[5:-5:7], indexing="ij")
        points = np.column_stack([ys.ravel(), xs.ravel()])
        error_um = np.linalg.norm(reg.transform_points(points) - truth.ebsd_to_lom(points), axis=1)
        quality["true_error_px_median"] = float(np.median(error_um) / fixed.attrs["pixel_size_um"])
        quality["true_error_px_p95"] = float(np.percentile(error_um, 95) / fixed.attrs["pixel_size_um"])
    as_json = json.dumps(quality, indent=2, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    (out / "quality.json").write_text(as_json)
    print(json.dumps({k: v for k, v in quality.items() if not isinstance(v, (dict, list))}, indent=2, default=str))
    if quality.get("failed"):
        print("registration FAILED: " + "; ".join(quality.get("failure_reasons", [])))
    print(f"written to {out.resolve()}")


if __name__ == "__main__":
    main()
