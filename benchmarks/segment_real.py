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

``--heldout screen|final`` (the issue-19 protocol): 3 folds over the 15 images; fold 0 is the
*tuning* fold and is never scored. ``screen`` trains every arm of ``ARMS`` on folds 1+2 under one
equal CPU-time budget and scores it on fold 0 only; ``final`` trains the chosen arm and the plain
baseline in the same run on the folds that hold out fold 1 and fold 2 and scores those folds. The
budget is process CPU time (user + system, all threads; ``TrainConfig.max_cpu_s``), not wall
time, so arms compared on a shared machine get the same compute: "20 minutes on an idle 2-core
machine" is read as at most 2 x 20 = 40 CPU-minutes for all k folds together, 800 CPU-s per fold
for k = 3. Run with ``OMP_WAIT_POLICY=PASSIVE`` so that idle OpenMP threads do not spin (spinning
counts as CPU time under load: 4.8 instead of 2.0 CPU-s per step measured on this machine).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/segment_real.py --heldout screen --cpu-minutes 3
    OMP_WAIT_POLICY=PASSIVE python benchmarks/segment_real.py --heldout final --arm physical

Each final fold model's entropy map is scored on its held-out images too (error rate of the most
uncertain decile over the rest's). ``--heldout rescore --tag _full40`` adds that score to a saved
final run whose checkpoints are still on disk, without training again. ``--heldout tta --arm recipe
--screen-tag _fullbudget --tag _recipe`` judges test-time augmentation on the tuning fold's screen
model and, only if it helps there, scores the final run's fold models with it. ``--heldout posthoc``
does the same for post-processing of the probabilities (Gaussian smoothing; a per-image scale
chosen by the lowest entropy; a guided filter; dropping a class an image barely predicts; test-time
batch-norm adaptation), scores every variant on the scored folds for the record, and counts how
many of the errors lie within 2-16 px of a labelled class boundary. ``--heldout fit`` trains the
final run's fold models of ``--arm`` and scores each on its own training images as well as on its
held-out fold, both split by distance to the labelled boundaries: how closely the arm fits the
labels it was given, at the same budget, is a ceiling for anything that only helps it generalise.
``--heldout fitscore --tag T`` scores a saved fit run again from its checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

from metallo import datasets
from metallo.errors import MetalloError
from metallo.segment import cross_validate, load_training_folder, loss_names, resolve_device

UHCS_CLASSES = ["matrix", "network", "spheroidite", "widmanstatten"]
PAPER = {"uhcs_pixelnet_focal_accuracy": 0.865, "lath_bainite_unet_mean_iou": (0.78, 0.80)}

#: The plain baseline of issue 19: 4-level U-Net-16, cross-entropy, flips and rot90 only, 0.5x.
PLAIN: dict = dict(model="unet", model_kwargs={"base_channels": 16}, loss="ce", loss_kwargs={}, modality="SEM",
                   scale=0.5, tile_size=256, epochs=100_000, batch_size=4, lr=2e-3, schedule="cosine",
                   augment={"brightness": 0.0, "contrast": 0.0, "gamma": 0.0}, eval_tile=None, eval_tta=False)
#: Placeholder of the ``pretrained`` arm's ``init_weights``: the checkpoint :func:`pretrained_checkpoint` writes.
PRETRAINED = "<pretrained in this run>"
#: Placeholder of the ``particles`` arm's ``init_weights``: the checkpoint :func:`particle_checkpoint` writes.
PARTICLES = "<particle model of this run>"
#: Levers of issue 19, each one change against PLAIN at the same CPU budget.
ARMS: dict[str, dict] = {
    "plain": {},
    # examples/train_uhcs.yaml until it took up "dropout" (recipe+dropout) after the _r54 runs and
    # "lr_low" (recipe+dropout+lr_low) after the _r57lr runs.
    "recipe": dict(loss="ce_dice", scale=1.0, augment={"blur": 0.2}),
    "physical": dict(scale=1.0, pixel_size_um=0.39, augment={**PLAIN["augment"], "scale": 0.25}),
    # The common pixel size of 11 of the 15 micrographs (0.194 µm/px); the others (0.078-0.388)
    # are resampled to it, for training and prediction alike, with the same zoom augmentation.
    "common_px": dict(scale=1.0, pixel_size_um=0.19417, augment={**PLAIN["augment"], "scale": 0.25}),
    "balanced": dict(balance_classes=0.5),
    "residual": dict(model_kwargs={"base_channels": 16, "residual": True}),
    "attention": dict(model_kwargs={"base_channels": 16, "attention": True}),
    "ce_dice": dict(loss="ce_dice"),
    # Lovasz-softmax (Berman et al. 2018) in place of Dice: a surrogate of the IoU the protocol scores.
    "lovasz": dict(loss="ce_lovasz"),
    # Elastic warps (Ronneberger et al. 2015, the U-Net's augmentation for few training images):
    # half the tiles displaced smoothly by up to 8 px, labels nearest.
    "elastic": dict(augment={"elastic": 0.5}),
    # Dropout of whole channels at the bottleneck (Ronneberger et al.: at the end of the
    # contracting path), against fitting ten training images too closely.
    "dropout": dict(model_kwargs={"base_channels": 16, "dropout": 0.3}),
    # Polyak averaging: the exponential moving average of the weights (~200-step horizon).
    "ema": dict(ema_decay=0.995),
    "ema_long": dict(ema_decay=0.999),
    # Multi-scale training over 0.5x-2x, each zoom taken from the image around the tile: the
    # scored folds hold micrographs at 0.4x and 2x the common pixel size (333, 357).
    "zoom": dict(augment={"scale": 1.0}),
    # A fifth U-Net level: twice the receptive field (Widmanstatten colonies span more than the
    # four-level net sees at native scale) for about 10 % more compute per step.
    "deep": dict(model_kwargs={"base_channels": 16, "depth": 5}),
    # Larger tiles at the same pixels per step: more context per tile, fewer tile borders.
    "big_tiles": dict(tile_size=384, batch_size=2),
    "photometric": dict(augment={"blur": 0.2}),
    # Self-supervised masked-inpainting pretraining on every UHCS micrograph in the shared data
    # (the 15 labelled and the 11 particle images, labels ignored), once per run, then PLAIN.
    "pretrained": dict(init_weights=PRETRAINED),
    # Supervised pretraining on the other labelled UHCS task: the 11 spheroidite-particle micrographs
    # (cementite particle / ferrite), once per run, then the arm's own training from those weights
    # (all but the output layer). DeCost et al. (2019) suggest one representation for both tasks;
    # where particles stop is the matrix / spheroidite edge, the commonest confusion.
    "particles": dict(init_weights=PARTICLES),
    # Coarse to fine: the first third of each fold model's budget at half resolution (about three
    # times the epochs per CPU-second), the rest at the arm's own scale from those weights. At the
    # budget the models do not fit their own training images to the target (--heldout fit); this
    # aims at fitting faster, not at generalising.
    "coarse": dict(coarse_first=1 / 3),
    # The learning rate, never screened before: Adam at 2e-3 under a cosine schedule is the
    # recipe's; twice and half that, for a faster or steadier fit within the same budget.
    "lr_high": dict(lr=4e-3),
    "lr_low": dict(lr=1e-3),
    "lr_lower": dict(lr=5e-4),
    # Against labels whose class edges are placed a few pixels off (half the held-out errors lie
    # within 2 px of a labelled boundary, and a quarter of those pixels stay wrong on the training
    # images themselves): soft targets (label smoothing 0.1, Szegedy et al. 2016), or no loss on
    # the pixel next to another class (a 2-px band around every labelled boundary).
    "smooth": dict(loss_kwargs={"label_smoothing": 0.1}),
    "band": dict(ignore_boundary_px=1.0),
}
TUNE_FOLD = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU setting: 3 folds, 16 training minutes in all, U-Net 16 ch")
    parser.add_argument("--data", default=None, help="example-data folder (default: METALLO_DATA)")
    parser.add_argument("--model", default="unet")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--folds", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None, help="training budget over all folds")
    parser.add_argument("--loss", default="ce_dice", choices=loss_names())
    parser.add_argument("--weights", default="none",
                        choices=["none", "inverse_frequency", "sqrt_inverse_frequency"],
                        help="class weights of weighted_ce / ce_dice (alpha of focal)")
    parser.add_argument("--base-channels", type=int, default=None, help="U-Net width (quick 16, full 64)")
    parser.add_argument("--scale", type=float, default=1.0, help="down-scaling before tiling")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--no-tta", action="store_true", help="evaluate without test-time augmentation")
    parser.add_argument("--uncertainty", action="store_true",
                        help="instead: does the uncertainty map mean something? (fold ensemble on unseen images)")
    parser.add_argument("--heldout", choices=["screen", "final", "fit", "fitscore", "summary", "rescore", "tta", "posthoc"], default=None,
                        help="issue-19 protocol: screen the levers on the tuning fold, the final run, or the "
                             "summary of saved screen/final files (choice on the tuning fold only), rescore a saved "
                             "final run's uncertainty, or judge test-time augmentation on the tuning fold (tta)")
    parser.add_argument("--arms", default=",".join(ARMS), help="screen: comma-separated arms (+ joins levers)")
    parser.add_argument("--arm", default="plain", help="final: comma-separated arms (plain = the baseline)")
    parser.add_argument("--cpu-minutes", type=float, default=None,
                        help="CPU minutes per model (screen 3; final 40 / folds; uncertainty 2.5)")
    parser.add_argument("--scored-folds", type=int, default=None,
                        help="final: split the images outside the tuning fold into this many scored folds; each "
                             "model trains on all other images, the tuning fold's included (never scored)")
    parser.add_argument("--tag", default="", help="suffix of the JSON file name")
    parser.add_argument("--jobs", type=int, default=1,
                        help="screen/final: fold models trained side by side in this many processes (threads shared)")
    parser.add_argument("--screen-tag", default="", help="tta: suffix of the screen file whose tuning-fold model judges TTA")
    parser.add_argument("--pretrain-cpu-minutes", type=float, default=5.0,
                        help="arms 'pretrained' and 'particles': CPU minutes of self-supervised pretraining on all UHCS "
                             "images, or of training on the particle labels (once per run)")
    parser.add_argument("--pretrain-patch", type=int, default=8, help="arm 'pretrained': side of the blanked squares, px")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)

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
    if args.heldout:
        heldout_benchmark(data, args, device, root)
        return
    quick = args.quick or device.type == "cpu"
    folds = args.folds or (3 if quick else 5)
    minutes = args.minutes or (16.0 if quick else 60.0)
    model_kwargs = {}
    if args.model == "unet":
        model_kwargs["base_channels"] = args.base_channels or (16 if quick else 64)
    weights = None if args.weights == "none" else args.weights
    loss_kwargs = {}
    if weights and args.loss in ("weighted_ce", "ce_dice", "ce_lovasz"):
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
    cpu_minutes = args.cpu_minutes or 2.5
    test_idx = fold_indices(len(data), 3, seed=1)[0]
    train_data = data.subset(np.setdiff1d(np.arange(len(data)), test_idx))
    test_data = data.subset(test_idx)
    settings = dict(PLAIN, **arm_settings(args.arm), device=str(device), seed=0, max_cpu_s=60.0 * cpu_minutes)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cv = cross_validate(train_data, folds=folds, out_dir=tmp, **settings)
        train_minutes = (time.perf_counter() - start) / 60
        train_cpu_minutes = sum(m["train_cpu_s"] for m in cv.folds) / 60
        by_name = {s.name: s for s in train_data.samples}

        def pooled(checkpoint, samples, key="uncertainty"):
            u, wrong, cm, per_image = [], [], np.zeros((4, 4), np.int64), []
            for s in samples:
                # The pixel size lets a checkpoint trained at one physical pixel size resample.
                out = predict(checkpoint, xr_image(s), uncertainty=True, device=str(device), tta=False)
                valid = s.labels != 255
                maps = {k: out[k].values[valid] for k in ("uncertainty", "disagreement") if k in out}
                wrong_i = out["labels"].values[valid] != s.labels[valid]
                u.append(maps)
                wrong.append(wrong_i)
                per_image.append({"image": s.name, **{f"{k}_ratio": _decile_ratio(v, wrong_i)["ratio"]
                                                      for k, v in maps.items()}})
                cm += confusion_matrix(s.labels, out["labels"].values, n_classes=4, ignore_index=255)
            maps = {k: np.concatenate([m[k] for m in u]) for k in u[0]}
            return maps, np.concatenate(wrong), metrics_from_confusion(cm, classes=UHCS_CLASSES), per_image

        per_fold = []
        for k, m in enumerate(cv.folds):
            maps, wrong, metrics, per_image = pooled(cv.checkpoints[k], [by_name[n] for n in m["held_out"]])
            per_fold.append({"fold": k, "held_out": m["held_out"], "entropy": _decile_ratio(maps["uncertainty"], wrong),
                             "accuracy": metrics["accuracy"], "mean_iou": metrics["mean_iou"], "images": per_image})
        singles = []
        for c in cv.checkpoints:
            maps, wrong, metrics, _ = pooled(c, test_data.samples)
            singles.append({"accuracy": metrics["accuracy"], "mean_iou": metrics["mean_iou"],
                            "entropy": _decile_ratio(maps["uncertainty"], wrong)})
        maps, wrong, ens, per_image = pooled(list(cv.checkpoints), test_data.samples)
        ensemble = {"entropy": _decile_ratio(maps["uncertainty"], wrong),
                    "disagreement": _decile_ratio(maps["disagreement"], wrong),
                    "accuracy": ens["accuracy"], "mean_iou": ens["mean_iou"], "iou": ens["iou"],
                    "singles": singles, "images": per_image, "test_images": [s.name for s in test_data.samples]}
    def line(r):
        return f"error top decile {r['top_decile_error']:.3f} vs rest {r['rest_error']:.3f} -> {r['ratio']:.1f}x"

    print(f"\nuncertainty on unseen pixels: {folds} fold models (arm {args.arm}), {train_cpu_minutes:.1f} CPU-min "
          f"training in all ({train_minutes:.1f} min wall)")
    for row in per_fold:
        print(f"  fold {row['fold']} entropy on its held-out images: {line(row['entropy'])} "
              f"(accuracy {row['accuracy']:.3f})")
    for k, row in enumerate(singles):
        print(f"  fold model {k} entropy on the {len(test_data)} test images: {line(row['entropy'])}")
    print(f"  ensemble entropy on the test images:      {line(ensemble['entropy'])}")
    print(f"  ensemble disagreement on the test images: {line(ensemble['disagreement'])}")
    print(f"  ensemble accuracy {ensemble['accuracy']:.3f} / mean IoU {ensemble['mean_iou']:.3f}; single fold models "
          f"{[round(m['accuracy'], 3) for m in singles]} / {[round(m['mean_iou'], 3) for m in singles]}")
    out = root / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    result = {"settings": settings, "train_minutes": train_minutes, "train_cpu_minutes": train_cpu_minutes,
              "per_fold": per_fold, "ensemble": ensemble, "load_average": os.getloadavg()}
    (out / f"segment_uncertainty{args.tag}.json").write_text(json.dumps(result, indent=1, default=float))
    print(f"saved {out / f'segment_uncertainty{args.tag}.json'}")


def arm_settings(name: str) -> dict:
    """TrainConfig overrides of an arm; ``a+b`` applies the levers of both (dicts merged)."""
    out: dict = {}
    for part in name.split("+"):
        if part not in ARMS:
            raise SystemExit(f"unknown arm {part!r}; known: {sorted(ARMS)}")
        for key, value in ARMS[part].items():
            out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def xr_image(sample):
    """A training sample's image as a DataArray that carries its pixel size (for predict)."""
    import xarray as xr

    image = sample.image[..., 0] if sample.image.shape[2] == 1 else sample.image
    dims = ("y", "x") if image.ndim == 2 else ("y", "x", "channel")
    ps = sample.pixel_size_um or 1.0
    coords = {"y": np.arange(image.shape[0]) * ps, "x": np.arange(image.shape[1]) * ps}
    return xr.DataArray(image, dims=dims, coords=coords, attrs={"units": "um"})


def _heldout_uncertainty(checkpoint, samples, device) -> dict:
    """Entropy of one fold model on its held-out images: top-decile error rate over the rest's
    (issue 19: >= 3x means the map shows where not to trust the labels), pooled and per image."""
    from metallo.segment import predict

    u, wrong, per_image = [], [], {}
    for s in samples:
        out = predict(checkpoint, xr_image(s), uncertainty=True, device=str(device), tta=False)
        valid = s.labels != 255
        u.append(out["uncertainty"].values[valid])
        wrong.append(out["labels"].values[valid] != s.labels[valid])
        per_image[s.name] = _decile_ratio(u[-1], wrong[-1])["ratio"]
    return {**_decile_ratio(np.concatenate(u), np.concatenate(wrong)), "per_image_ratio": per_image}


def heldout_rescore(data, path: Path, device) -> None:
    """Add the held-out entropy decile ratio to a saved final run whose checkpoints still exist."""
    blob = json.loads(path.read_text())
    by_name = {s.name: s for s in data.samples}
    for arm in blob["arms"]:
        for row in arm["folds"]:
            if not Path(row["checkpoint"]).exists():
                raise SystemExit(f"{path}: checkpoint {row['checkpoint']} is gone; rerun the final run")
            row["uncertainty"] = _heldout_uncertainty(row["checkpoint"], [by_name[n] for n in row["held_out"]], device)
            print(f"  {arm['arm']} fold {row['fold']}: entropy top decile error {row['uncertainty']['top_decile_error']:.3f} "
                  f"vs rest {row['uncertainty']['rest_error']:.3f} -> {row['uncertainty']['ratio']:.1f}x")
    path.write_text(json.dumps(blob, indent=1, default=float))
    print(f"saved {path}")


def heldout_tta(data, args, out: Path, device) -> None:
    """Test-time augmentation as an evaluation choice, by the protocol: judged on the tuning fold's
    screen model of ``--arm`` (screen file ``--screen-tag``), applied to the final run's fold
    models (final file ``--tag``, all its arms) only if it raised the tuning fold's mean IoU."""
    from metallo.segment import evaluate, fold_indices

    arm = args.arm.split(",")[-1]
    screen = json.loads((out / f"segment_heldout_screen{args.screen_tag}.json").read_text())
    final = json.loads((out / f"segment_heldout_final{args.tag}.json").read_text())
    parts = fold_indices(len(data), final["folds"], seed=0)

    def score(checkpoint: str, k: int, tta: bool) -> dict:
        if not Path(checkpoint).exists():
            raise SystemExit(f"checkpoint {checkpoint} is gone; rerun the screen and final runs")
        m = evaluate(checkpoint, data.subset(parts[k]), device=str(device), tta=tta)
        return {"accuracy": m["accuracy"], "mean_iou": m["mean_iou"], "iou": m["iou"]}

    tuning = next(r for r in screen["arms"] if r["arm"] == arm)["folds"][0]
    choice = {tta: score(tuning["checkpoint"], TUNE_FOLD, tta) for tta in (False, True)}
    use = choice[True]["mean_iou"] > choice[False]["mean_iou"]
    print(f"tuning fold, {arm}: without TTA {choice[False]['accuracy']:.3f} / {choice[False]['mean_iou']:.3f}, "
          f"with {choice[True]['accuracy']:.3f} / {choice[True]['mean_iou']:.3f} -> TTA {'on' if use else 'off'}")
    result = {"arm_judged": arm, "tuning_fold": {str(k): v for k, v in choice.items()}, "tta": use, "arms": {}}
    for r in final["arms"] if use else []:
        rows = [score(row["checkpoint"], row["fold"], True) for row in r["folds"]]
        mean = {"accuracy": float(np.mean([x["accuracy"] for x in rows])), "mean_iou": float(np.mean([x["mean_iou"] for x in rows])),
                "iou": np.nanmean([x["iou"] for x in rows], axis=0).tolist()}
        result["arms"][r["arm"]] = {"folds": rows, "mean": mean}
        print(f"  {r['arm']:<22} with TTA: {mean['accuracy']:.3f} / {mean['mean_iou']:.3f} IoU {np.round(mean['iou'], 3).tolist()} "
              f"(without: {r['mean']['accuracy']:.3f} / {r['mean']['mean_iou']:.3f})", flush=True)
    (out / f"segment_heldout_tta{args.tag}.json").write_text(json.dumps(result, indent=1, default=float))
    print(f"saved {out / f'segment_heldout_tta{args.tag}.json'}")


#: Post-hoc choices judged by ``--heldout posthoc``: Gaussian smoothing of the class probabilities
#: (sigma in µm, on each image's own pixel size), a per-image prediction scale chosen among
#: ``POSTHOC_SCALES`` by the lowest mean entropy of its probabilities (no labels needed), an
#: edge-preserving guided filter of the probabilities with the micrograph as guide (radius px,
#: eps), dropping a class an image predicts on under ``POSTHOC_PRUNE`` of its pixels (its pixels
#: go to their next class), and test-time batch-norm adaptation: the network's normalisation
#: statistics mixed with those of the image itself (``POSTHOC_ADAPT_BN``: the training statistics'
#: share; AdaBN, Li et al. 2016), no labels needed either.
POSTHOC_SMOOTH_UM = (0.5, 1.0, 2.0, 4.0)
POSTHOC_SCALES = (0.5, 0.71, 1.0, 1.41, 2.0)
POSTHOC_GUIDED = ((2, 0.1), (4, 0.01), (8, 0.01))
POSTHOC_PRUNE = (0.01, 0.02)
POSTHOC_ADAPT_BN = (0.5, 0.0)
#: Distances (px) from a labelled class boundary at which ``--heldout posthoc`` counts the errors.
BOUNDARY_BANDS_PX = (2, 4, 8, 16)


def _box(a: np.ndarray, r: int) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.uniform_filter(a, 2 * r + 1, mode="reflect")


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (2010): ``src`` smoothed where ``guide`` is flat, kept where it has edges."""
    m_i, m_p = _box(guide, radius), _box(src, radius)
    a = (_box(guide * src, radius) - m_i * m_p) / (_box(guide * guide, radius) - m_i * m_i + eps)
    b = m_p - a * m_i
    return _box(a, radius) * guide + _box(b, radius)


def _pruned(probs: np.ndarray, fraction: float) -> np.ndarray:
    """Labels after dropping each class predicted on fewer than ``fraction`` of the image's pixels."""
    p = probs.copy()
    labels = p.argmax(-1)
    for _ in range(p.shape[-1]):
        share = np.bincount(labels.ravel(), minlength=p.shape[-1]) / labels.size
        weak = [c for c in range(p.shape[-1]) if 0 < share[c] < fraction]
        if not weak:
            break
        p[..., weak] = -1.0
        labels = p.argmax(-1)
    return labels


def _bn_adapted(checkpoint: str, image: np.ndarray, train_share: float, device):
    """The checkpoint's network with batch-norm statistics ``train_share`` x its own + the rest from ``image``."""
    import torch
    from torch import nn

    from metallo.segment import load_checkpoint

    net, info = load_checkpoint(checkpoint, device=str(device))
    mean, std = float(np.mean(info["normalization"]["mean"])), float(np.mean(info["normalization"]["std"]))
    x = torch.from_numpy(((image - mean) / std)[None, None].astype(np.float32)).to(device)
    mult = int(getattr(net, "size_multiple", 16))
    x = torch.nn.functional.pad(x, (0, (-x.shape[-1]) % mult, 0, (-x.shape[-2]) % mult), mode="reflect")
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # the image's own statistics, from one pass over all of it
    net.train()
    with torch.no_grad():
        net(x)
    for m, (rm, rv, momentum) in zip(norms, saved, strict=True):
        m.running_mean.mul_(1 - train_share).add_(train_share * rm)
        m.running_var.mul_(1 - train_share).add_(train_share * rv)
        m.momentum = momentum
    return net.eval()


def _posthoc_probabilities(checkpoint: str, sample, device) -> dict[float, tuple[np.ndarray, float]]:
    """Class probabilities (y, x, class) of one image at each of ``POSTHOC_SCALES``, with the mean
    of ``predict``'s uncertainty map (normalised entropy)."""
    from metallo.segment import predict

    out = {}
    for scale in POSTHOC_SCALES:
        p = predict(checkpoint, xr_image(sample), probabilities=True, uncertainty=True, tta=False, device=str(device), scale=scale)
        out[scale] = (np.asarray(p["probabilities"].transpose("y", "x", ...).values, np.float64), float(p["uncertainty"].mean()))
    return out


def _posthoc_variants(probs: dict[float, tuple[np.ndarray, float]], sample, checkpoint: str, device) -> dict[str, np.ndarray]:
    """The label map of every post-hoc variant of one image."""
    from scipy import ndimage as ndi

    from metallo.segment import predict

    pixel_size_um = sample.pixel_size_um or 1.0
    native = probs[1.0][0]
    out = {"none": native.argmax(-1)}
    for sigma in POSTHOC_SMOOTH_UM:
        smooth = np.stack([ndi.gaussian_filter(native[..., c], sigma / pixel_size_um) for c in range(native.shape[-1])], -1)
        out[f"smooth_{sigma:g}um"] = smooth.argmax(-1)
    out["scale_by_entropy"] = min(probs.values(), key=lambda pu: pu[1])[0].argmax(-1)
    grey = sample.image.mean(-1).astype(np.float64)
    guide = (grey - grey.mean()) / (grey.std() + 1e-9) * 0.2
    for radius, eps in POSTHOC_GUIDED:
        out[f"guided_r{radius}_eps{eps:g}"] = np.stack(
            [guided_filter(guide, native[..., c], radius, eps) for c in range(native.shape[-1])], -1).argmax(-1)
    for fraction in POSTHOC_PRUNE:
        out[f"drop_classes_under_{fraction:g}"] = _pruned(native, fraction)
    for share in POSTHOC_ADAPT_BN:
        net = _bn_adapted(checkpoint, grey.astype(np.float32), share, device)
        out[f"adapt_bn_{share:g}"] = np.asarray(predict(net, xr_image(sample), tta=False, device=str(device), scale=1.0))
    return out


def heldout_posthoc(data, args, out: Path, device) -> None:
    """Post-hoc choices (probability smoothing, per-image scale by entropy) by the protocol: each
    is judged on the tuning fold's screen model of ``--arm``; the best one, if it beats none there,
    is applied to the final run's fold models of that arm (final file ``--tag``)."""
    from metallo.segment import (
        boundary_errors,
        boundary_summary,
        confusion_matrix,
        fold_indices,
        metrics_from_confusion,
    )

    arm = args.arm.split(",")[-1]
    screen = json.loads((out / f"segment_heldout_screen{args.screen_tag}.json").read_text())
    final = json.loads((out / f"segment_heldout_final{args.tag}.json").read_text())
    parts = fold_indices(len(data), final["folds"], seed=0)
    n = len(UHCS_CLASSES)

    bands: dict[int, dict[str, int]] = {}

    def score(checkpoint: str, k: int, count_bands: bool = False) -> dict[str, dict]:
        if not Path(checkpoint).exists():
            raise SystemExit(f"checkpoint {checkpoint} is gone; rerun the screen and final runs")
        cms: dict[str, np.ndarray] = {}
        for i in parts[k]:
            s = data.samples[i]
            for name, labels in _posthoc_variants(_posthoc_probabilities(checkpoint, s, device), s, checkpoint, device).items():
                cm = confusion_matrix(s.labels, labels, n_classes=n, ignore_index=data.ignore_index)
                cms[name] = cms.get(name, 0) + cm
                if count_bands and name == "none":
                    for d in BOUNDARY_BANDS_PX:
                        counts = boundary_errors(s.labels, labels, ignore_index=data.ignore_index, band_px=d)
                        bands[d] = {key: bands.get(d, {}).get(key, 0) + v for key, v in counts.items()}
        return {name: {key: metrics_from_confusion(cm, classes=UHCS_CLASSES)[key] for key in ("accuracy", "mean_iou", "iou")}
                for name, cm in cms.items()}

    tuning = score(next(r for r in screen["arms"] if r["arm"] == arm)["folds"][0]["checkpoint"], TUNE_FOLD)
    best = max(tuning, key=lambda v: tuning[v]["mean_iou"])
    chosen = best if tuning[best]["mean_iou"] > tuning["none"]["mean_iou"] else "none"
    for name, m in tuning.items():
        print(f"tuning fold, {arm}, {name:<18} {m['accuracy']:.3f} / {m['mean_iou']:.3f}")
    print(f"-> chosen on the tuning fold: {chosen}")
    # Every variant is scored on the scored folds too, for the record; only ``chosen`` was chosen.
    rows = [dict(fold=row["fold"], **score(row["checkpoint"], row["fold"], count_bands=True))
            for row in next(r for r in final["arms"] if r["arm"] == arm)["folds"]]
    every = {v: {"accuracy": float(np.mean([r[v]["accuracy"] for r in rows])),
                 "mean_iou": float(np.mean([r[v]["mean_iou"] for r in rows]))} for v in tuning}
    for v, m in every.items():
        print(f"scored folds, {arm}, {v:<24} {m['accuracy']:.3f} / {m['mean_iou']:.3f}{'  (chosen)' if v == chosen else ''}")
    boundary = {str(d): boundary_summary(c, band_px=d) for d, c in sorted(bands.items())}
    for d, b in boundary.items():
        print(f"errors within {d:>2} px of a labelled boundary: {b['error_share']:.2f} (on {b['pixel_share']:.2f} of the "
              f"pixels); accuracy beyond: {b['accuracy_beyond']:.3f}")
    mean = {v: every[v] for v in ("none", chosen)}
    result = {"arm_judged": arm, "smooth_um": list(POSTHOC_SMOOTH_UM), "scales": list(POSTHOC_SCALES),
              "guided": [list(g) for g in POSTHOC_GUIDED], "drop_classes_under": list(POSTHOC_PRUNE),
              "adapt_bn_train_share": list(POSTHOC_ADAPT_BN),
              "tuning_fold": tuning, "chosen": chosen, "scored_folds": rows, "scored_mean": mean,
              "scored_mean_every_variant": every, "boundary_bands_px": boundary}
    (out / f"segment_heldout_posthoc{args.tag}.json").write_text(json.dumps(result, indent=1, default=float))
    print(f"saved {out / f'segment_heldout_posthoc{args.tag}.json'}")


def _run_arm(data, name: str, folds: list[int], parts: list[np.ndarray], cpu_s: float, device, out_dir: Path,
             jobs: int = 1) -> dict:
    """Train arm ``name`` once per fold in ``folds`` (held out: ``parts[k]``) and score the held-out images.

    ``jobs > 1`` trains the folds side by side in worker processes sharing the torch threads
    (``cross_validate(jobs=...)``); each fold's CPU budget is counted in its own process."""
    from metallo.segment._train import train_folds

    settings = dict(PLAIN, **arm_settings(name), device=str(device), seed=0, max_cpu_s=cpu_s)
    if settings.get("init_weights") == PRETRAINED:
        settings["init_weights"] = str(out_dir.parent / "pretrained.pt")
    if settings.get("init_weights") == PARTICLES:
        settings["init_weights"] = str(out_dir.parent / "particles.pt")
    t0, c0 = time.perf_counter(), time.process_time()
    arm_dir = out_dir / name.replace("+", "_")
    coarse = settings.pop("coarse_first", None)
    if coarse:
        print(f"  {name}: {coarse * cpu_s / 60:.1f} CPU-min at half resolution first", flush=True)
        first = train_folds(data, parts, folds, jobs=jobs, out_dir=str(arm_dir / "coarse"),
                            **dict(settings, scale=0.5 * settings.get("scale", 1.0), max_cpu_s=coarse * cpu_s))
        settings["max_cpu_s"] = (1 - coarse) * cpu_s
        settings["init_weights"] = {k: str(arm_dir / "coarse" / f"fold{k}.pt") for k in folds}
        second = train_folds(data, parts, folds, jobs=jobs, out_dir=str(arm_dir), **settings)
        # Both stages count against the fold model's budget.
        outcomes = [(dict(m2, train_cpu_s=m1["train_cpu_s"] + m2["train_cpu_s"], train_steps=m1["train_steps"] + m2["train_steps"],
                          coarse_stage={key: m1[key] for key in ("accuracy", "mean_iou", "train_cpu_s", "train_steps", "epochs_run")}),
                     checkpoint) for (m1, _), (m2, checkpoint) in zip(first, second, strict=True)]
    else:
        outcomes = train_folds(data, parts, folds, jobs=jobs, out_dir=str(arm_dir), **settings)
    rows = []
    for k, (metrics, checkpoint) in zip(folds, outcomes, strict=True):
        held = parts[k]
        m = dict(metrics)
        rows.append({"fold": k, "held_out": [data.samples[i].name for i in held], "accuracy": m["accuracy"],
                     "mean_iou": m["mean_iou"], "iou": m["iou"], "confusion": m["confusion"],
                     "train_cpu_s": m["train_cpu_s"], "train_wall_s": m["train_wall_s"],
                     "train_steps": m["train_steps"], "epochs_run": m["epochs_run"], "coarse_stage": m.get("coarse_stage"),
                     # Training of this arm's folds so far (in turn) or of all of them (side by side).
                     "arm_cpu_s_this_process": time.process_time() - c0, "arm_wall_s": time.perf_counter() - t0,
                     "checkpoint": str(checkpoint),
                     "uncertainty": _heldout_uncertainty(checkpoint, [data.samples[i] for i in held], device)})
        print(f"  {name:<22} fold {k}: accuracy {m['accuracy']:.3f} mIoU {m['mean_iou']:.3f} IoU "
              f"{np.round(m['iou'], 3).tolist()} ({m['train_steps']} steps, {m['train_cpu_s'] / 60:.1f} CPU-min, "
              f"{m['train_wall_s'] / 60:.1f} min wall)", flush=True)
    total = sum(np.asarray(r["confusion"], np.int64) for r in rows)
    from metallo.segment import metrics_from_confusion

    pooled = metrics_from_confusion(total, classes=UHCS_CLASSES)
    with np.errstate(all="ignore"):
        mean_iou_per_class = np.nanmean([r["iou"] for r in rows], axis=0).tolist()
    return {"arm": name, "settings": settings, "folds": rows,
            "mean": {"accuracy": float(np.mean([r["accuracy"] for r in rows])),
                     "mean_iou": float(np.mean([r["mean_iou"] for r in rows])), "iou": mean_iou_per_class},
            "pooled": {"accuracy": pooled["accuracy"], "mean_iou": pooled["mean_iou"], "iou": pooled["iou"]},
            "train_cpu_s": float(sum(r["train_cpu_s"] for r in rows))}


def heldout_benchmark(data, args, device, root: Path) -> None:
    """The issue-19 protocol: levers screened on the tuning fold, the final run scored on the others."""
    from metallo.segment import fold_indices

    if args.heldout == "summary":
        heldout_summary(root / "benchmarks" / "results")
        return
    if args.heldout == "rescore":
        heldout_rescore(data, root / "benchmarks" / "results" / f"segment_heldout_final{args.tag}.json", device)
        return
    if args.heldout == "fitscore":
        heldout_fitscore(data, root / "benchmarks" / "results" / f"segment_heldout_fit{args.tag}.json", device)
        return
    if args.heldout == "tta":
        heldout_tta(data, args, root / "benchmarks" / "results", device)
        return
    if args.heldout == "posthoc":
        heldout_posthoc(data, args, root / "benchmarks" / "results", device)
        return
    k = args.folds or 3
    parts = fold_indices(len(data), k, seed=0)
    run_dir = Path(os.environ.get("METALLO_RUNS", "/tmp/metallo-heldout-runs"))
    start, cpu0 = time.perf_counter(), time.process_time()
    # Pretrainings of this run, once each, by the lever that uses them.
    makers = {"pretrained": pretrained_checkpoint, "particles": particle_checkpoint}
    asked = {part for a in (args.arms if args.heldout == "screen" else args.arm).split(",") for part in a.split("+")}
    pretraining = {lever: make(args, device, run_dir / f"{lever}.pt") for lever, make in makers.items() if lever in asked}

    def budget(arm: str, per_model: float) -> float:
        # Equal total compute: an arm that pretrains spends its share of the pretraining (over the
        # k fold models a full cross-validation trains) less on each fold model.
        return per_model - sum(pretraining[lever]["cpu_s"] / k for lever in set(arm.split("+")) & set(pretraining))

    if args.heldout == "screen":
        cpu_s = 60.0 * (args.cpu_minutes or 3.0)
        arms = args.arms.split(",")
        print(f"screen: {len(arms)} arms x {cpu_s / 60:.1f} CPU-min, trained on folds "
              f"{[j for j in range(k) if j != TUNE_FOLD]}, scored on tuning fold {TUNE_FOLD} only", flush=True)
        results = [_run_arm(data, a, [TUNE_FOLD], parts, budget(a, cpu_s), device, run_dir / "screen", args.jobs) for a in arms]
        scored = "tuning fold only"
    else:
        folds = [j for j in range(k) if j != TUNE_FOLD]
        if args.scored_folds:
            # The tuning fold stays out of scoring but joins every model's training: the scored
            # images are split more finely, so each model sees more of the labelled images.
            rest = np.concatenate([parts[j] for j in folds])
            parts = [parts[TUNE_FOLD], *(rest[p] for p in fold_indices(len(rest), args.scored_folds, seed=0))]
            folds = list(range(1, len(parts)))
        # 40 CPU-minutes for all the models of one cross-validation (k = 3: 800 CPU-s each).
        cpu_s = 60.0 * (args.cpu_minutes or 40.0 / (len(folds) if args.scored_folds else k))
        arms = args.arm.split(",")
        print(f"final: arms {arms}, {cpu_s / 60:.1f} CPU-min per fold model, scored folds {folds} "
              f"(tuning fold {TUNE_FOLD} not scored, {'in every training set' if args.scored_folds else 'not trained'})",
              flush=True)
        results = [_run_arm(data, a, folds, parts, budget(a, cpu_s), device, run_dir / args.heldout, args.jobs) for a in arms]
        scored = f"folds {folds}"
        if args.heldout == "fit":
            _score_in_sample(data, results, parts, device)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"\n{args.heldout}: scored on {scored}; {cpu_s / 60:.1f} CPU-min per model; "
          f"{(time.perf_counter() - start) / 60:.1f} min wall")
    header = f"{'arm':<24}{'acc':>7}{'mIoU':>7}" + "".join(f"{c[:8]:>10}" for c in UHCS_CLASSES) + f"{'CPU-min':>9}"
    print(header)
    for r in results:
        print(f"{r['arm']:<24}{r['mean']['accuracy']:>7.3f}{r['mean']['mean_iou']:>7.3f}"
              + "".join(f"{v:>10.3f}" for v in r["mean"]["iou"]) + f"{r['train_cpu_s'] / 60:>9.1f}")
    out = root / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = f"segment_heldout_{args.heldout}{args.tag}.json"
    result = {"protocol": __doc__.split("``--heldout")[1].split("\n\n")[0], "folds": k, "tuning_fold": TUNE_FOLD,
              "fold_images": [[data.samples[i].name for i in p] for p in parts], "cpu_s_per_model": cpu_s,
              "scored_folds": args.scored_folds,
              "arms": results, "wall_minutes": (time.perf_counter() - start) / 60,
              "process_cpu_minutes": (time.process_time() - cpu0) / 60,
              "ru_user_sys_minutes": (usage.ru_utime + usage.ru_stime) / 60, "torch_threads": 2, "jobs": args.jobs,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "load_average_end": os.getloadavg(),
              "pretraining": pretraining}
    (out / name).write_text(json.dumps(result, indent=1, default=float))
    print(f"saved {out / name}")


def _score_in_sample(data, results: list[dict], parts: list[np.ndarray], device) -> None:
    """``--heldout fit``: each final fold model scored on its own training images too.

    How well a model of the arm fits the labels it was trained on, at the same budget, bounds what
    any choice that only helps it generalise can reach on held-out images. Both sides are predicted
    here the same way (whole images, no TTA) and split by distance to the labelled class boundaries."""
    from metallo.segment import (
        boundary_errors,
        boundary_summary,
        confusion_matrix,
        metrics_from_confusion,
        predict,
    )

    n = len(UHCS_CLASSES)

    def score(checkpoint: str, indices) -> tuple[dict, dict]:
        cm = np.zeros((n, n), np.int64)
        bands: dict[int, dict[str, int]] = {}
        for i in indices:
            s = data.samples[i]
            labels = np.asarray(predict(checkpoint, xr_image(s), tta=False, device=str(device)))
            cm += confusion_matrix(s.labels, labels, n_classes=n, ignore_index=data.ignore_index)
            for d in BOUNDARY_BANDS_PX:
                counts = boundary_errors(s.labels, labels, ignore_index=data.ignore_index, band_px=d)
                bands[d] = {key: bands.get(d, {}).get(key, 0) + v for key, v in counts.items()}
        m = metrics_from_confusion(cm, classes=UHCS_CLASSES)
        return {"images": [data.samples[i].name for i in indices], "accuracy": m["accuracy"], "mean_iou": m["mean_iou"],
                "iou": m["iou"], "confusion": cm.tolist(),
                "boundary_bands_px": {str(d): boundary_summary(c, band_px=d) for d, c in sorted(bands.items())}}, bands

    sides = ("in_sample", "held_out_scored_here")
    for r in results:
        band_counts: dict[str, list[dict]] = {side: [] for side in sides}
        for row in r["folds"]:
            if not Path(row["checkpoint"]).exists():
                raise SystemExit(f"checkpoint {row['checkpoint']} is gone; rerun --heldout fit")
            train_idx = np.setdiff1d(np.arange(len(data)), parts[row["fold"]])
            for side, indices in zip(sides, (train_idx, parts[row["fold"]]), strict=True):
                row[side], bands = score(row["checkpoint"], indices)
                band_counts[side].append(bands)
                m = row[side]
                print(f"  {r['arm']:<22} fold {row['fold']} {side:<21} accuracy {m['accuracy']:.3f} mIoU {m['mean_iou']:.3f} "
                      f"IoU {np.round(m['iou'], 3).tolist()}", flush=True)
        for side in sides:
            each = [row[side] for row in r["folds"]]
            with np.errstate(all="ignore"):
                mean = {"accuracy": float(np.mean([m["accuracy"] for m in each])),
                        "mean_iou": float(np.mean([m["mean_iou"] for m in each])),
                        "iou": np.nanmean([m["iou"] for m in each], axis=0).tolist()}
            bands = {d: {key: sum(c[d][key] for c in band_counts[side]) for key in band_counts[side][0][d]} for d in BOUNDARY_BANDS_PX}
            r[f"{side}_mean"] = dict(mean, boundary_bands_px={str(d): boundary_summary(c, band_px=d) for d, c in bands.items()})
            print(f"{r['arm']}: {side} {mean['accuracy']:.3f} / {mean['mean_iou']:.3f} (IoU {np.round(mean['iou'], 3).tolist()})")
            for d, b in r[f"{side}_mean"]["boundary_bands_px"].items():
                print(f"    errors within {d:>2} px of a labelled boundary: {b['error_share']:.2f} (on {b['pixel_share']:.2f} of "
                      f"the pixels); accuracy beyond: {b['accuracy_beyond']:.3f}", flush=True)


def heldout_fitscore(data, path: Path, device) -> None:
    """``--heldout fitscore --tag T``: score a saved ``--heldout fit`` run again from its checkpoints."""
    from metallo.segment import fold_indices

    result = json.loads(path.read_text())
    _score_in_sample(data, result["arms"], fold_indices(len(data), result["folds"], seed=0), device)
    path.write_text(json.dumps(result, indent=1, default=float))
    print(f"saved {path}")


def pretrained_checkpoint(args, device, path: Path) -> dict:
    """Masked-inpainting pretraining of PLAIN's network on all UHCS micrographs (labels ignored), once per run."""
    from metallo.segment import pretrain

    folders = [datasets.path(n, folder=args.data) for n in ("uhcs_microconstituent_segmentation",
                                                            "uhcs_spheroidite_particle_segmentation")]
    cpu_s = 60.0 * args.pretrain_cpu_minutes
    print(f"pretraining {PLAIN['model']} {PLAIN['model_kwargs']} by masked inpainting on "
          f"{', '.join(f.name for f in folders)} for {cpu_s / 60:.1f} CPU-min", flush=True)
    result = pretrain([str(f) for f in folders], model=PLAIN["model"], model_kwargs=PLAIN["model_kwargs"],
                      scale=PLAIN["scale"], tile_size=PLAIN["tile_size"], batch_size=PLAIN["batch_size"], lr=PLAIN["lr"],
                      epochs=100_000, max_cpu_s=cpu_s, device=str(device), seed=0, out=path,
                      patch=args.pretrain_patch)
    m = result.metrics
    print(f"  pretrained on {len(m['images'])} images: inpainting MSE {m['loss']:.3f} (mean fill {m['baseline_loss']:.3f}), "
          f"{m['train_steps']} steps, {m['train_cpu_s'] / 60:.1f} CPU-min", flush=True)
    return {"checkpoint": str(path), "patch": args.pretrain_patch, "cpu_s": m["train_cpu_s"], "wall_s": m["train_wall_s"], "steps": m["train_steps"],
            "loss": m["loss"], "baseline_loss": m["baseline_loss"], "images": m["images"]}


def particle_checkpoint(args, device, path: Path) -> dict:
    """The recipe's network trained on the spheroidite-particle micrographs (2 classes), once per run.

    Its weights fit arms with the network of ``recipe+dropout`` (U-Net, 16 base channels).
    """
    from metallo.segment import train

    folder = datasets.path("uhcs_spheroidite_particle_segmentation", folder=args.data)
    cpu_s = 60.0 * args.pretrain_cpu_minutes
    settings = dict(PLAIN, **arm_settings("recipe+dropout"))
    print(f"pretraining {settings['model']} {settings['model_kwargs']} on the particle labels of {folder.name} "
          f"for {cpu_s / 60:.1f} CPU-min", flush=True)
    result = train(str(folder), classes=["ferrite", "cementite"], **settings, device=str(device), seed=0,
                   max_cpu_s=cpu_s, out_dir=str(path.parent), checkpoint_name=path.name)
    m = result.metrics
    print(f"  particle model: {m['train_steps']} steps, {m['train_cpu_s'] / 60:.1f} CPU-min", flush=True)
    return {"checkpoint": str(path), "task": "particles", "cpu_s": m["train_cpu_s"], "wall_s": m["train_wall_s"],
            "steps": m["train_steps"]}


TARGET = {"accuracy": 0.94, "mean_iou": 0.80}


def heldout_summary(out: Path) -> None:
    """Pick the arm with the best tuning-fold mean IoU among those with a final run; report the
    scored folds of that arm next to the plain baseline, per class, against the issue's target.

    Arms are compared within one screen file (one machine: a CPU-time budget buys ~1.6x more steps
    on one of this project's machines than on another), the one of the largest CPU time per model
    among files in which at least two arms with a final run were screened (a short screen ranks
    arms by how fast they learn, not by where they end); among equal budgets the last by name."""
    finals, plains = {}, {}
    for f in sorted(out.glob("segment_heldout_final*.json")):
        blob = json.loads(f.read_text())
        if blob.get("scored_folds"):
            continue  # another split of the images: not comparable with the screens' protocol
        for r in blob["arms"]:
            finals[r["arm"]] = {**r, "cpu_s_per_model": blob["cpu_s_per_model"], "file": f.name}
            if r["arm"] == "plain":
                plains[f.name] = finals["plain"]
    if "plain" not in finals:
        raise SystemExit("summary needs screen files and a final run of 'plain'")
    screens = []
    for f in sorted(out.glob("segment_heldout_screen*.json")):
        blob = json.loads(f.read_text())
        arms = {r["arm"]: r for r in blob["arms"]}
        if sum(a in finals for a in arms) >= 2:
            screens.append((float(blob["cpu_s_per_model"]), f.name, arms))
    if not screens:
        raise SystemExit("summary needs a screen of at least two arms that have a final run")
    # The largest budget; among equal ones the last file by name (max keeps the first it meets).
    screen_budget, screen_file, screen = max(reversed(screens), key=lambda s: s[0])
    candidates = [a for a in screen if a in finals]
    best = max(candidates, key=lambda a: screen[a]["mean"]["mean_iou"])
    # The baseline of the chosen arm's own final run: a CPU-time budget buys a different number of
    # steps on another machine, so only arms trained in one run compare.
    finals["plain"] = plains.get(finals[best]["file"], finals["plain"])
    print(f"tuning fold (choice, {screen_file}, {screen_budget / 60:.1f} CPU-min per model):  " + ", ".join(f"{a} {screen[a]['mean']['mean_iou']:.3f}"
                                                for a in sorted(screen, key=lambda a: -screen[a]["mean"]["mean_iou"])))
    print(f"chosen on the tuning fold: {best}\nscored folds (mean over folds):")
    print(f"{'arm':<24}{'acc':>7}{'mIoU':>7}" + "".join(f"{c[:8]:>10}" for c in UHCS_CLASSES)
          + f"{'CPU-min':>9}{'steps':>7}  run (only rows of one run compare)")
    for arm in dict.fromkeys(["plain", best, *finals]):
        r = finals[arm]
        steps = sum(row.get("train_steps", 0) for row in r["folds"])
        print(f"{arm:<24}{r['mean']['accuracy']:>7.3f}{r['mean']['mean_iou']:>7.3f}"
              + "".join(f"{v:>10.3f}" for v in r["mean"]["iou"]) + f"{r['train_cpu_s'] / 60:>9.1f}{steps:>7}  "
              + r["file"].removeprefix("segment_heldout_final").removesuffix(".json").lstrip("_"))
    reached = {key: finals[best]["mean"][key] >= value for key, value in TARGET.items()}
    print(f"target accuracy >= {TARGET['accuracy']}, mean IoU >= {TARGET['mean_iou']}: "
          f"{'reached' if all(reached.values()) else 'NOT reached'} by {best}")
    summary = {"screen_tuning_fold": {a: r["mean"] for a, r in screen.items()}, "screen_cpu_s_per_model": screen_budget,
               "screen_file": screen_file,
               "chosen": best,
               "final": {a: {"mean": r["mean"], "pooled": r["pooled"], "folds": [
                   {k: v for k, v in row.items() if k != "confusion"} for row in r["folds"]],
                   "train_cpu_s": r["train_cpu_s"], "cpu_s_per_model": r["cpu_s_per_model"]}
                   for a, r in finals.items()},
              "target": TARGET, "reached": reached}
    (out / "segment_heldout.json").write_text(json.dumps(summary, indent=1, default=float))
    print(f"saved {out / 'segment_heldout.json'}")


if __name__ == "__main__":
    main()
