"""``metallo train``, ``metallo predict``, ``metallo evaluate``: supervised segmentation commands."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from metallo._atomic import atomic_write_json
from metallo.cli._progress import rich_progress
from metallo.cli._strict import EXIT_CHECK_FAILED, verdict_text


def register(app: typer.Typer) -> None:
    """Add the supervised segmentation commands to the ``metallo`` app."""

    @app.command()
    def train(
        source: Annotated[Path, typer.Argument(help="A YAML training config, or a DATA_DIR with images/ + labels/.")],
        out: Annotated[Path | None, typer.Option("--out", help="Output folder (checkpoints, metrics).")] = None,
        model: Annotated[str | None, typer.Option("--model", help="unet, unet_vgg16 or pixelnet.")] = None,
        epochs: Annotated[int | None, typer.Option("--epochs", help="Training epochs.")] = None,
        folds: Annotated[int | None, typer.Option("--folds", help="Cross-validation folds (default 5; 0 = none).")] = None,
        jobs: Annotated[int | None, typer.Option("--jobs", help="Folds trained side by side in this many processes on a CPU (default 1).")] = None,
        tile: Annotated[int | None, typer.Option("--tile", help="Training tile size in px.")] = None,
        scale: Annotated[float | None, typer.Option("--scale", help="Down-scaling factor before tiling.")] = None,
        pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Resample every image to this pixel size (µm) first, instead of --scale.")] = None,
        device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
        final: Annotated[bool, typer.Option("--final/--no-final", help="After CV, train model.pt on all images.")] = True,
        init_weights: Annotated[Path | None, typer.Option("--init-weights", help="Start from this checkpoint (metallo pretrain output, same model).")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
    ) -> None:
        """Train a segmentation CNN with k-fold cross-validation, then a final model on all images."""
        from rich.console import Console
        from rich.table import Table

        from metallo.segment._train import TrainConfig, cross_validate
        from metallo.segment._train import train as train_model

        overrides = {"out_dir": str(out) if out else None, "model": model, "epochs": epochs, "tile_size": tile,
                     "scale": scale, "pixel_size_um": pixel_size, "device": device, "seed": seed, "jobs": jobs,
                     "init_weights": str(init_weights) if init_weights else None}
        cfg = TrainConfig.from_any(source, **{k: v for k, v in overrides.items() if v is not None})
        n_folds = cfg.folds if folds is None else folds
        console = Console(highlight=False)
        out_dir = Path(cfg.out_dir or "metallo-runs")
        if n_folds:
            cfg = TrainConfig.from_any(cfg, folds=n_folds, out_dir=str(out_dir))
            with rich_progress(not quiet) as progress:
                cv = cross_validate(cfg, progress=progress)
            table = Table(title=f"{n_folds}-fold cross-validation ({cfg.model})")
            frame = cv.table()
            table.add_column("fold")
            for col in frame.columns:
                table.add_column(col, justify="right")
            for idx, row in frame.iterrows():
                table.add_row(str(idx), *[f"{v:.3f}" for v in row])
            console.print(table)
            console.print(f"metrics: {out_dir / 'cv_metrics.json'}")
        if final or not n_folds:
            with rich_progress(not quiet) as progress:
                result = train_model(cfg, out_dir=str(out_dir), checkpoint_name="model.pt", progress=progress)
            console.print(f"checkpoint: {result.checkpoint}")

    @app.command()
    def predict(
        checkpoint: Annotated[Path, typer.Argument(help="A checkpoint written by metallo train (or its .onnx export); with --ensemble the run folder or any checkpoint in it.")],
        images: Annotated[list[Path], typer.Argument(help="Image files and/or folders.")],
        out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("metallo-predictions"),
        tile: Annotated[str, typer.Option("--tile", help="'auto' (whole image when it fits --memory, else tiles), a tile size in px, or 0 (whole image).")] = "auto",
        overlap: Annotated[int | None, typer.Option("--overlap", help="Tile overlap in px (default: 4x the model's receptive-field radius).")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", help="Tiles per forward pass (default: as fit --memory).")] = None,
        memory: Annotated[float, typer.Option("--memory", help="Activation memory budget per forward pass, MiB.")] = 1024.0,
        device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
        probabilities: Annotated[bool, typer.Option("--probabilities", help="Also write class probabilities (.npy).")] = False,
        ensemble: Annotated[bool, typer.Option("--ensemble", help="Average the cross-validation fold models (fold*.pt beside CHECKPOINT) and write the uncertainty map.")] = False,
        uncertainty: Annotated[bool | None, typer.Option("--uncertainty/--no-uncertainty", help="Write the per-pixel uncertainty (default: with --ensemble).")] = None,
        specimen: Annotated[Path | None, typer.Option("--specimen", help="Specimen file: IMAGES are micrograph node names (several: one segmentation each, NAME_<micrograph>).")] = None,
        name: Annotated[str | None, typer.Option("--name", help="Segmentation node name (with --specimen; default the model name).")] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing segmentation node.")] = False,
        tta: Annotated[bool | None, typer.Option("--tta/--no-tta", help="Average over 8 flips/rotations (default: as the checkpoint was evaluated; on a CPU only where that measured a gain).")] = None,
        pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Pixel size of the images in µm (overrides the files).")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
        strict: Annotated[bool, typer.Option("--strict", help="Exit 3 when a segmentation failed its quality check "
                                             "(UNCERTAIN; it is still written); errors exit 1.")] = False,
    ) -> None:
        """Segment micrographs: label PNGs, overlays, class fractions, uncertainty (or Specimen /segmentations/NAME)."""
        from rich.console import Console

        from metallo.errors import ConfigError
        from metallo.segment._infer import ensemble_checkpoints, predict_files, predict_to_specimen

        console = Console(highlight=False)
        if tile.strip().lower() == "auto":
            tile_opt: int | str | None = "auto"
        else:
            try:
                tile_opt = int(tile) or None
            except ValueError:
                raise ConfigError(f"--tile must be 'auto', 0 or a size in px; got {tile!r}") from None
        source: Path | list[Path] = checkpoint
        if ensemble:
            folds = ensemble_checkpoints(checkpoint)
            console.print(f"ensemble of {len(folds)} fold models: {', '.join(p.name for p in folds)}")
            source = folds
        if specimen is not None:
            from metallo.specimen import Specimen

            # Open-modify-save under the specimen's lock: a second writer waits its turn.
            with Specimen.lock(specimen):
                spec = Specimen.open(specimen)
                nodes = [str(node).strip("/") for node in images]
                # Several micrographs with one model: one segmentation each, named <name>_<micrograph>.
                leaves = [n.rsplit("/", 1)[-1] for n in nodes]
                if len(set(leaves)) != len(leaves):
                    raise ConfigError(f"{specimen}: micrograph nodes {nodes} share a name; predict them one at a time "
                                      "with --name")
                from metallo import names
                from metallo.report import quality_checks

                written = []
                for node, leaf in zip(nodes, leaves, strict=True):
                    suffix = f"_{leaf}" if len(nodes) > 1 else ""
                    labels = predict_to_specimen(source, spec, micrograph=node, name=name, tile=tile_opt,
                                                 overlap=overlap, device=device, overwrite=overwrite, suffix=suffix,
                                                 tta=tta, uncertainty=True if uncertainty is None else uncertainty)
                    written.append((node, names.segmentation(f"{name or labels.attrs['model']}{suffix}")))
                spec.save()
            checks = quality_checks(spec)
            for node, seg in written:
                console.print(f"{node} -> {seg}{verdict_text(checks.get(seg), failed='UNCERTAIN')}", markup=False)
            if strict and any(seg in checks and not checks[seg]["passed"] for _, seg in written):
                raise typer.Exit(EXIT_CHECK_FAILED)
            return
        with rich_progress(not quiet) as progress:
            records = predict_files(source, images, out_dir=out, tile=tile_opt, overlap=overlap,
                                    batch_size=batch_size, device=device, probabilities=probabilities,
                                    uncertainty=uncertainty, progress=progress, tta=tta, pixel_size_um=pixel_size,
                                    memory_mib=memory)
        atomic_write_json(out / "predictions.json", records)
        if records:
            first = records[0]
            layout = "whole image" if first["tile"] is None else f"tiles of {first['tile']} px"
            console.print(f"TTA {'on' if first['tta'] else 'off'} ({first['tta_reason']}); {layout}")
        for rec in records:
            fractions = ", ".join(f"{k} {v:.3f}" for k, v in rec["fractions"].items())
            doubt = ""
            if "quality" in rec:
                q = rec["quality"]
                if "uncertain_fraction" in q:
                    doubt = f"  uncertain {q['uncertain_fraction']:.1%}, expected error {q['expected_error']:.3f}"
                if "novel_fraction" in q:
                    doubt += f"  novel {q['novel_fraction']:.0%}" + ("" if q["novelty_passed"] else " UNLIKE TRAINING")
                doubt += "" if q["passed"] else "  UNCERTAIN"
            console.print(f"{rec['input']} -> {rec['labels']}  ({fractions}){doubt}")
        if strict and any(rec.get("quality", {}).get("passed") is False for rec in records):
            raise typer.Exit(EXIT_CHECK_FAILED)

    @app.command()
    def pretrain(
        images: Annotated[list[Path], typer.Argument(help="Micrograph files or folders (their images/ if present); labels are ignored.")],
        out: Annotated[Path, typer.Option("--out", help="Checkpoint to write (train --init-weights reads it).")] = Path("pretrained.pt"),
        model: Annotated[str, typer.Option("--model", help="unet, unet_vgg16 or pixelnet: the model you will train.")] = "unet",
        base_channels: Annotated[int | None, typer.Option("--base-channels", help="unet: channels of the first level.")] = None,
        scale: Annotated[float, typer.Option("--scale", help="Down-scaling factor, as in training.")] = 1.0,
        tile: Annotated[int, typer.Option("--tile", help="Tile size in px.")] = 256,
        patch: Annotated[int, typer.Option("--patch", help="Side of the blanked squares in px (after --scale).")] = 8,
        cpu_minutes: Annotated[float | None, typer.Option("--cpu-minutes", help="Budget in CPU minutes of this process.")] = None,
        minutes: Annotated[float | None, typer.Option("--minutes", help="Budget in wall-clock minutes.")] = None,
        epochs: Annotated[int, typer.Option("--epochs", help="Most epochs (the budget may end it first).")] = 1000,
        device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
        seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
        quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
    ) -> None:
        """Self-supervised pretraining on unlabelled micrographs (masked inpainting), for train --init-weights."""
        from rich.console import Console

        from metallo.errors import ConfigError
        from metallo.segment import pretrain as pretrain_model

        missing = [str(p) for p in images if not p.exists()]
        if missing:  # said first: a budget given for files that are not there would only fail later
            raise ConfigError(f"{', '.join(missing[:3])}: no such image file or folder")
        if cpu_minutes is None and minutes is None and epochs >= 1000:
            raise ConfigError("give a budget: --cpu-minutes, --minutes or a smaller --epochs")
        kwargs = {} if base_channels is None else {"base_channels": base_channels}
        with rich_progress(not quiet) as progress:
            result = pretrain_model([str(p) for p in images], model=model, model_kwargs=kwargs, scale=scale,
                                    tile_size=tile, patch=patch, epochs=epochs, device=device, seed=seed, out=out,
                                    max_cpu_s=None if cpu_minutes is None else 60 * cpu_minutes,
                                    max_time_s=None if minutes is None else 60 * minutes, progress=progress)
        m = result.metrics
        Console(highlight=False).print(
            f"pretrained on {len(m['images'])} images, {m['train_steps']} steps: inpainting error {m['loss']:.3f} "
            f"(mean fill {m['baseline_loss']:.3f})\ncheckpoint: {result.checkpoint}")

    @app.command("export")
    def export(
        checkpoint: Annotated[Path, typer.Argument(help="A checkpoint written by metallo train.")],
        onnx: Annotated[bool, typer.Option("--onnx", help="Write an ONNX model (for ONNX Runtime, Fiji/DeepImageJ, napari).")] = False,
        out: Annotated[Path | None, typer.Option("--out", help="Output file (default: CHECKPOINT with suffix .onnx).")] = None,
    ) -> None:
        """Export a trained model to another format (ONNX)."""
        from rich.console import Console

        from metallo.errors import ConfigError
        from metallo.segment import export_onnx

        if not onnx:
            raise ConfigError("choose an export format: --onnx")
        path = export_onnx(checkpoint, out)
        Console(highlight=False).print(f"{checkpoint} -> {path}")

    @app.command()
    def evaluate(
        checkpoint: Annotated[Path, typer.Argument(help="A checkpoint written by metallo train.")],
        data_dir: Annotated[Path, typer.Argument(help="Labelled folder (images/ + labels/).")],
        out: Annotated[Path | None, typer.Option("--out", help="Write metrics JSON here.")] = None,
        tile: Annotated[int, typer.Option("--tile", help="Tile size in px (0 = whole image).")] = 0,
        overlap: Annotated[int, typer.Option("--overlap", help="Tile overlap in px.")] = 64,
        device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
        tta: Annotated[bool | None, typer.Option("--tta/--no-tta", help="Average over 8 flips/rotations (default: as the checkpoint was evaluated).")] = None,
    ) -> None:
        """Whole-image metrics of a checkpoint on labelled images: IoU per class, accuracy, confusion."""
        from rich.console import Console
        from rich.table import Table

        from metallo.segment._train import evaluate as evaluate_checkpoint

        metrics = evaluate_checkpoint(checkpoint, data_dir, tile=tile or None, overlap=overlap, device=device, tta=tta)
        table = Table(title=f"{checkpoint.name} on {data_dir}")
        for col in ("class", "IoU", "precision", "recall"):
            table.add_column(col, justify="right")
        for c, name in enumerate(metrics["classes"]):
            table.add_row(name, *[f"{metrics[k][c]:.3f}" for k in ("iou", "precision", "recall")])
        console = Console(highlight=False)
        console.print(table)
        console.print(f"accuracy {metrics['accuracy']:.3f}  mean IoU {metrics['mean_iou']:.3f}")
        near = metrics["boundary"]
        if not math.isnan(near["error_share"]):  # NaN where there are no errors
            console.print(f"errors within {near['band_px']:g} px of a labelled class boundary: {near['error_share']:.0%} "
                          f"(on {near['pixel_share']:.0%} of the pixels); accuracy beyond them {near['accuracy_beyond']:.3f}")
        if out is not None:
            atomic_write_json(out, metrics)
