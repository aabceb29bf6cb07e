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
    parser.add_argument("--uncertainty", action="store_true",
                        help="instead: does the uncertainty map mean something? (fold ensemble on unseen images)")
    args = parser.parse_args()

    root = Path(__file__).resolve().parents[1]
    try:
        folder = datasets.path("uhcs_microconstituent_segmentation", folder=args.data)
    except MetalloError as exc:
        raise SystemExit(str(exc)) from None
    device = resolve_device(args.device)
    data = load_training_folder(folder, classes=UHCS_CLASSES)
    if args.uncertainty:
        uncertainty_benchmark(data, args, device, root)
        return
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


def _decile_ratio(uncertainty: np.ndarray, wrong: np.ndarray) -> dict:
    """Error rate of the 10 % most uncertain pixels over that of the other 90 %."""
    cut = np.quantile(uncertainty, 0.9)
    top = uncertainty > cut
    if not top.any() or top.all():
        top = uncertainty >= cut
    top_rate, rest_rate = float(wrong[top].mean()), float(wrong[~top].mean())
    return {"top_decile_error": top_rate, "rest_error": rest_rate,
            "ratio": top_rate / rest_rate if rest_rate > 0 else float("inf"), "pixels": int(wrong.size)}


def uncertainty_benchmark(data, args, device, root: Path) -> None:
    """Split off a third of the images as unseen test images, cross-validate on the rest (k fold
    models, short CPU training), then measure on pixels no model trained on: (a) each fold
    model's entropy on its held-out fold, (b) the fold ensemble's uncertainty on the test images,
    and the ensemble's accuracy / mean IoU against the single fold models on the same images."""
    import tempfile

    from metallo.segment import confusion_matrix, fold_indices, metrics_from_confusion, predict

    folds = args.folds or 3
    minutes = args.minutes or 6.0
    test_idx = fold_indices(len(data), 3, seed=1)[0]
    train_data = data.subset(np.setdiff1d(np.arange(len(data)), test_idx))
    test_data = data.subset(test_idx)
    settings = dict(model="unet", model_kwargs={"base_channels": args.base_channels or 8}, loss=args.loss,
                    modality="SEM", scale=args.scale, tile_size=args.tile, epochs=100_000, batch_size=4, lr=2e-3,
                    schedule="cosine", augment={"blur": 0.2}, device=str(device), seed=0,
                    max_time_s=60.0 * minutes / folds, eval_tile=None, eval_tta=False, progress=False)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cv = cross_validate(train_data, folds=folds, out_dir=tmp, **settings)
        train_minutes = (time.perf_counter() - start) / 60
        by_name = {s.name: s for s in train_data.samples}

        def pooled(checkpoint, samples):
            u, wrong, cm = [], [], np.zeros((4, 4), np.int64)
            for s in samples:
                out = predict(checkpoint, s.image, uncertainty=True, device=str(device), tta=False)
                valid = s.labels != 255
                u.append(out["uncertainty"].values[valid])
                wrong.append(out["labels"].values[valid] != s.labels[valid])
                cm += confusion_matrix(s.labels, out["labels"].values, n_classes=4, ignore_index=255)
            return np.concatenate(u), np.concatenate(wrong), metrics_from_confusion(cm, classes=UHCS_CLASSES)

        per_fold = []
        for k, m in enumerate(cv.folds):
            u, wrong, metrics = pooled(cv.checkpoints[k], [by_name[n] for n in m["held_out"]])
            per_fold.append({"fold": k, "held_out": m["held_out"], **_decile_ratio(u, wrong),
                             "accuracy": metrics["accuracy"], "mean_iou": metrics["mean_iou"]})
        singles = [pooled(c, test_data.samples)[2] for c in cv.checkpoints]
        u, wrong, ens = pooled(list(cv.checkpoints), test_data.samples)
        ensemble = {**_decile_ratio(u, wrong), "accuracy": ens["accuracy"], "mean_iou": ens["mean_iou"],
                    "iou": ens["iou"], "single_accuracy": [m["accuracy"] for m in singles],
                    "single_mean_iou": [m["mean_iou"] for m in singles],
                    "test_images": [s.name for s in test_data.samples]}
    print(f"\nuncertainty on unseen pixels: {folds} fold models (U-Net {settings['model_kwargs']}, scale {args.scale}, "
          f"{train_minutes:.1f} min training in all)")
    for row in per_fold:
        print(f"  fold {row['fold']} on its held-out images: error top decile {row['top_decile_error']:.3f} vs rest "
              f"{row['rest_error']:.3f} -> {row['ratio']:.1f}x (accuracy {row['accuracy']:.3f})")
    print(f"  ensemble on {len(test_data)} test images: error top decile {ensemble['top_decile_error']:.3f} vs rest "
          f"{ensemble['rest_error']:.3f} -> {ensemble['ratio']:.1f}x")
    print(f"  ensemble accuracy {ensemble['accuracy']:.3f} / mean IoU {ensemble['mean_iou']:.3f}; single fold models "
          f"{np.round(ensemble['single_accuracy'], 3).tolist()} / {np.round(ensemble['single_mean_iou'], 3).tolist()}")
    out = root / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    result = {"settings": settings, "train_minutes": train_minutes, "per_fold": per_fold, "ensemble": ensemble,
              "load_average": os.getloadavg()}
    (out / "segment_uncertainty.json").write_text(json.dumps(result, indent=1, default=float))
    print(f"saved {out / 'segment_uncertainty.json'}")


if __name__ == "__main__":
    main()
