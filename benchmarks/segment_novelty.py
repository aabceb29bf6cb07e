"""Cost of the novelty check in prediction, as a ratio to the same prediction without it.

On the real 481 x 645 UHCS micrographs in ../shared/data, a U-Net with 16 base channels (random
weights, seeded: the cost does not depend on them) predicts each image with and without a
novelty reference built from all 15 images (interleaved, so that machine load hits both alike).
Also the cost of building the reference (one forward pass per training image).

    python benchmarks/segment_novelty.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from metallo.segment import get_model, predict
from metallo.segment._data import load_training_folder
from metallo.segment._novelty import build_reference
from metallo.segment._train import novelty_cells

CLASSES = ["matrix", "network", "spheroidite", "widmanstatten"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = Path(os.environ.get("METALLO_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    data = load_training_folder(root / "uhcs_microconstituent_segmentation", classes=CLASSES)
    torch.manual_seed(0)
    net = get_model("unet", n_classes=4, base_channels=16).eval()
    norm = {"mean": [0.444], "std": [0.16]}
    t0 = time.perf_counter()
    reference = build_reference(novelty_cells(net, data, mean=norm["mean"], std=norm["std"], device="cpu"))
    build_s = time.perf_counter() - t0
    plain, checked = {"normalization": norm}, {"normalization": norm, "novelty": reference}
    images = [s.image[..., 0] for s in data.samples[:5]]
    times: dict[str, list[float]] = {"without": [], "with": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for info in (plain, checked):  # warm-up
            net.metallo_info = info
            predict(net, images[0], device="cpu", tta=False)
        for _ in range(args.repeats):
            for image in images:
                for key, info in (("without", plain), ("with", checked)):
                    net.metallo_info = info
                    t = time.perf_counter()
                    predict(net, image, device="cpu", tta=False)
                    times[key].append(time.perf_counter() - t)
    without, with_ = float(np.median(times["without"])), float(np.median(times["with"]))
    result = {"shape": list(images[0].shape), "predictions_each": len(times["with"]),
              "predict_without_check_s": without, "predict_with_check_s": with_, "ratio_with_vs_without": with_ / without,
              "reference_build_s_15_images": build_s, "reference_cells": len(reference["reference"]),
              "torch_threads": torch.get_num_threads(), "load_average": list(os.getloadavg())}
    print(f"predict per image: without the novelty check {without:.3f} s, with it {with_:.3f} s "
          f"(ratio {with_ / without:.3f}); reference from 15 images {build_s:.1f} s")
    out = Path(__file__).resolve().parent / "results" / "segment_novelty.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
