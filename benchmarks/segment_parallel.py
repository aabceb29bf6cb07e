"""Cross-validation on a CPU: folds in turn against folds side by side (``jobs``), same work.

On the 15 real UHCS micrographs in ../shared/data (the ``examples/train_uhcs.yaml`` recipe:
U-Net 16, native scale, CE + Dice, 256-px tiles, bfloat16 where the CPU has it), a 3-fold
cross-validation for a fixed number of epochs per fold, so both runs do the same training:

* ``in turn``: ``jobs=1``, each fold on all of this process's torch threads (the old way);
* ``side by side``: ``jobs=2`` (default; ``--jobs``), the folds in worker processes sharing the
  threads (two one-thread folds, then the third on both threads on a 2-core machine).

Reported for each: wall time of the whole cross-validation, CPU seconds per optimiser step
(training only, summed over the folds' processes), and the held-out accuracy / mean IoU (the same
seeded training; they differ only by the floating-point order of other thread counts). The
ratios (in turn / side by side) are printed and saved to
``benchmarks/results/segment_parallel.json``.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/segment_parallel.py [--epochs 30] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from metallo import datasets
from metallo.segment import cross_validate, load_training_folder

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["matrix", "network", "spheroidite", "widmanstatten"]
#: examples/train_uhcs.yaml, with an epoch count instead of a time budget (equal work in both runs).
RECIPE = dict(model="unet", model_kwargs={"base_channels": 16}, loss="ce_dice", modality="SEM", scale=1.0,
              tile_size=256, batch_size=4, lr=0.002, schedule="cosine", augment={"blur": 0.2}, device="cpu",
              seed=0, out_dir=None)


def run(data, folds: int, jobs: int, epochs: int) -> dict:
    t0 = time.perf_counter()
    cv = cross_validate(data, folds=folds, jobs=jobs, epochs=epochs, **RECIPE)
    wall = time.perf_counter() - t0
    steps = sum(f["train_steps"] for f in cv.folds)
    cpu = sum(f["train_cpu_s"] for f in cv.folds)
    return {"jobs": jobs, "wall_s": wall, "train_cpu_s": cpu, "train_steps": steps, "cpu_s_per_step": cpu / steps,
            "fold_train_wall_s": [f["train_wall_s"] for f in cv.folds],
            "accuracy": cv.mean["accuracy"], "mean_iou": cv.mean["mean_iou"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="epochs per fold (default 30)")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    folder = datasets.path("uhcs_microconstituent_segmentation")
    data = load_training_folder(folder, classes=CLASSES)
    threads = torch.get_num_threads()
    print(f"{args.folds}-fold CV of the UHCS recipe, {args.epochs} epochs per fold, {threads} torch threads, "
          f"{os.cpu_count()} CPUs", flush=True)
    rows = []
    for jobs in (1, args.jobs):
        row = run(data, args.folds, jobs, args.epochs)
        rows.append(row)
        print(f"  jobs={jobs}: {row['wall_s']:.0f} s wall, {row['cpu_s_per_step']:.3f} CPU-s per step "
              f"({row['train_steps']} steps), held-out {row['accuracy']:.3f} / {row['mean_iou']:.3f}", flush=True)
    turn, side = rows
    ratios = {"wall_in_turn_over_side_by_side": turn["wall_s"] / side["wall_s"],
              "cpu_per_step_in_turn_over_side_by_side": turn["cpu_s_per_step"] / side["cpu_s_per_step"]}
    print(f"side by side: {ratios['wall_in_turn_over_side_by_side']:.2f}x less wall time, "
          f"{ratios['cpu_per_step_in_turn_over_side_by_side']:.2f}x more steps per CPU-second")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "segment_parallel", "epochs": args.epochs, "folds": args.folds, "torch_threads": threads,
              "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "rows": rows, "ratios": ratios,
              "held_out_difference": {"accuracy": side["accuracy"] - turn["accuracy"],
                                      "mean_iou": side["mean_iou"] - turn["mean_iou"]},
              "load_average_end": os.getloadavg()}
    (out / "segment_parallel.json").write_text(json.dumps(result, indent=1, default=float))
    print(f"saved {out / 'segment_parallel.json'}")


if __name__ == "__main__":
    main()
