"""Cross-validated supervised segmentation of the real UHCS micrographs (metallo.datasets).

Trains with k-fold cross-validation over images (every reported number is on micrographs the
model never saw) and prints per-class IoU and pixel accuracy next to the published figures:
UHCS PixelNet + focal loss, 86.5 % accuracy (DeCost et al. 2019, 6-fold CV on 24 images);
lath bainite U-Net mean IoU about 0.78-0.80 (Durmaz et al. 2021, another data set, quoted for
scale only). The baseline in the same run is the majority class of the training folds.

``--quick`` (CPU, under 20 minutes): native resolution, a U-Net with 16 base channels, tiles of
256 px, CE + Dice (the Dice term keeps the rare Widmanstätten class), cosine learning rate annealed
over a wall-time budget, bfloat16 on CPUs that have it, test-time augmentation, 3 folds. The full
setting (CUDA) uses 64 base channels (the paper's U-Net), 5 folds and an hour of training.

    /work/venv/bin/python benchmarks/segment_real.py --quick
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from metallo import datasets
from metallo.errors import MetalloError
from metallo.segment import cross_validate, load_training_folder, resolve_device

UHCS_CLASSES = ["matrix", "network", "spheroidite", "widmanstatten"]
PAPER = {"uhcs_pixelnet_focal_accuracy": 0.865, "lath_bainite_unet_mean_iou": (0.78, 0.80)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU setting: 3 folds, 16 training minutes in all, U-Net 16 ch")
    parser.add_argument("--data", default=None, help="example-data folder (default: METALLO_DATA)")
    parser.add_argument("--model", default="unet")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--folds", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None, help="training budget over all folds")
    parser.add_argument("--loss", default="ce_dice", choices=["ce", "weighted_ce", "focal", "dice", "ce_dice"])
    parser.add_argument("--weights", default="none",
                        choices=["none", "inverse_frequency", "sqrt_inverse_frequency"],
                        help="class weights of weighted_ce / ce_dice (alpha of focal)")
    parser.add_argument("--base-channels", type=int, default=None, help="U-Net width (quick 16, full 64)")
    parser.add_argument("--scale", type=float, default=1.0, help="down-scaling before tiling")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--no-tta", action="store_true", help="evaluate without test-time augmentation")
    args = parser.parse_args()

    root = Path(__file__).resolve().parents[1]
    try:
        folder = datasets.path("uhcs_microconstituent_segmentation", folder=args.data)
    except MetalloError as exc:
        raise SystemExit(str(exc)) from None
    device = resolve_device(args.device)
    data = load_training_folder(folder, classes=UHCS_CLASSES)
    quick = args.quick or device.type == "cpu"
    folds = args.folds or (3 if quick else 5)
    minutes = args.minutes or (16.0 if quick else 60.0)
    model_kwargs = {}
    if args.model == "unet":
        model_kwargs["base_channels"] = args.base_channels or (16 if quick else 64)
    weights = None if args.weights == "none" else args.weights
    loss_kwargs = {}
    if weights and args.loss in ("weighted_ce", "ce_dice"):
        loss_kwargs["weight"] = weights
    elif weights and args.loss == "focal":
        loss_kwargs["alpha"] = weights
    settings = dict(
        model=args.model, model_kwargs=model_kwargs, loss=args.loss, loss_kwargs=loss_kwargs, modality="SEM",
        scale=args.scale, tile_size=args.tile, epochs=100_000, batch_size=4, lr=2e-3, schedule="cosine",
        augment={"blur": 0.2}, device=str(device), seed=0, max_time_s=60.0 * minutes / folds, eval_tile=None,
        eval_tta=not args.no_tta, out_dir=str(root / "benchmarks" / "results" / "segment_real_runs"),
    )
    start = time.perf_counter()
    cv = cross_validate(data, folds=folds, **settings)
    elapsed = time.perf_counter() - start

    # Baseline measured in the same run: predict the majority class of the training folds.
    base_acc = []
    for m in cv.folds:
        held = set(m["held_out"])
        counts = sum(np.bincount(s.labels[s.labels != 255], minlength=4) for s in data.samples if s.name not in held)
        cm = np.asarray(m["confusion"])
        base_acc.append(cm[int(np.argmax(counts))].sum() / cm.sum())  # rows are the truth
    ratio = cv.pooled["accuracy"] / float(np.mean(base_acc))

    print(f"\nUHCS microconstituents, {folds}-fold CV over {len(data)} images, model {args.model} {model_kwargs}, "
          f"loss {args.loss} {loss_kwargs}, device {device.type}, scale {settings['scale']}, tile {args.tile}, "
          f"TTA {not args.no_tta}, {elapsed / 60:.1f} min")
    print(f"{'class':<15}{'IoU mean':>10}{'± std':>8}{'pooled IoU':>12}{'precision':>11}{'recall':>8}")
    for c, name in enumerate(UHCS_CLASSES):
        print(f"{name:<15}{cv.mean['iou'][c]:>10.3f}{cv.std['iou'][c]:>8.3f}{cv.pooled['iou'][c]:>12.3f}"
              f"{cv.pooled['precision'][c]:>11.3f}{cv.pooled['recall'][c]:>8.3f}")
    print(f"{'accuracy':<15}{cv.mean['accuracy']:>10.3f}{cv.std['accuracy']:>8.3f}{cv.pooled['accuracy']:>12.3f}"
          f"   paper (PixelNet, focal): {PAPER['uhcs_pixelnet_focal_accuracy']:.3f}")
    print(f"{'mean IoU':<15}{cv.mean['mean_iou']:>10.3f}{cv.std['mean_iou']:>8.3f}{cv.pooled['mean_iou']:>12.3f}"
          f"   lath bainite U-Net (other data): 0.78-0.80")
    print(f"majority-class baseline accuracy {np.mean(base_acc):.3f}; CNN / baseline = {ratio:.2f}x")

    out = root / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    result = {"dataset": "uhcs_microconstituent_segmentation", "folds": folds, "n_images": len(data),
              "device": device.type, "quick": quick, "minutes": elapsed / 60, "settings": settings,
              "cv": cv.to_dict(), "baseline_majority_accuracy": float(np.mean(base_acc)),
              "accuracy_ratio_vs_baseline": ratio, "paper": PAPER}
    (out / "segment_real.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"saved {out / 'segment_real.json'}")


if __name__ == "__main__":
    main()
