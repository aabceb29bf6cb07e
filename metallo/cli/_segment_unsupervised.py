"""``metallo segment-unsupervised``: CNN + superpixel segmentation without labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from metallo._atomic import atomic_write_text
from metallo._progress import ProgressCallback
from metallo.cli._progress import rich_progress
from metallo.cli._strict import EXIT_CHECK_FAILED


def _parse_classes(value: str) -> int | None:
    """``"auto"`` -> None (choose by F); otherwise an integer of 2 or more (one class segments nothing)."""
    from metallo.errors import ConfigError

    if value.strip().lower() == "auto":
        return None
    try:
        k = int(value)
    except ValueError:
        raise ConfigError(f"--classes must be an integer of 2 or more, or 'auto'; got {value!r}") from None
    if k < 2:
        raise ConfigError(f"--classes must be an integer of 2 or more, or 'auto' (one class segments nothing); got {value!r}")
    return k


def register(app: typer.Typer) -> None:
    """Add ``segment-unsupervised`` to the ``metallo`` app."""

    @app.command("segment-unsupervised")
    def segment_unsupervised(
        images: Annotated[list[str], typer.Argument(help="Image files, or micrograph node names with --specimen.")],
        classes: Annotated[str, typer.Option("--classes", help="Number of classes, or 'auto' (lowest mean F).")] = "auto",
        k_range: Annotated[str, typer.Option("--k-range", help="Class counts tried by 'auto', as FIRST:LAST.")] = "2:6",
        repeats: Annotated[int, typer.Option("--repeats", help="Runs per class count for 'auto'.")] = 3,
        out: Annotated[Path, typer.Option("--out", help="Output folder for label maps, overlays, criteria.")] = Path(
            "metallo-unsupervised"),
        stack: Annotated[bool, typer.Option("--stack/--separate",
                                            help="One network for all images (labels agree across images).")] = False,
        preset: Annotated[str, typer.Option("--preset", help="auto (settings from image size and device) or paper (the paper's exact settings).")] = "auto",
        superpixels: Annotated[int | None, typer.Option("--superpixels", help="SLIC superpixels per (working) image (default: from the preset).")] = None,
        compactness: Annotated[float | None, typer.Option("--compactness", help="SLIC compactness (0-100 scale).")] = None,
        channels: Annotated[int | None, typer.Option("--channels", help="Filters per 3x3 convolution.")] = None,
        max_iter: Annotated[int | None, typer.Option("--max-iter", help="Iteration limit.")] = None,
        max_time: Annotated[float | None, typer.Option("--max-time", help="Training time budget per run, seconds.")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
        device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
        specimen: Annotated[Path | None, typer.Option("--specimen",
                                                      help="Specimen file: IMAGES are micrograph node names.")] = None,
        name: Annotated[str, typer.Option("--name", help="Segmentation node name (with --specimen).")] = "unsupervised",
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing specimen nodes.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
        strict: Annotated[bool, typer.Option("--strict", help="Exit 3 when a result is DOUBTFUL (it is still "
                                             "written); errors exit 1.")] = False,
    ) -> None:
        """Segment micrographs without labels (CNN + SLIC superpixels) and rank the result by F, F', Q."""
        from contextlib import nullcontext

        from metallo.cli._segment_unsupervised import run_segment_unsupervised
        from metallo.specimen import Specimen

        # With --specimen: open-modify-save under the specimen's lock (a second writer waits its turn).
        lock = Specimen.lock(specimen) if specimen is not None else nullcontext()
        with rich_progress(not quiet) as progress, lock:
            _, doubtful = run_segment_unsupervised(
                images, classes=classes, k_range=k_range, repeats=repeats, out=out, stack=stack,
                options={"n_superpixels": superpixels, "compactness": compactness, "channels": channels,
                         "max_iter": max_iter, "max_time_s": max_time, "preset": preset, "device": device},
                seed=seed, specimen=specimen, name=name, overwrite=overwrite, progress=progress,
            )
        if strict and doubtful:
            raise typer.Exit(EXIT_CHECK_FAILED)


def _k_values(text: str) -> list[int]:
    from metallo.errors import ConfigError

    try:
        first, last = (int(part) for part in text.split(":"))
    except ValueError:
        raise ConfigError(f"--k-range must look like FIRST:LAST (e.g. 2:6); got {text!r}") from None
    if not 2 <= first <= last:
        raise ConfigError(f"--k-range needs 2 <= FIRST <= LAST (one class segments nothing); got {text!r}")
    return list(range(first, last + 1))


def run_segment_unsupervised(
    images: list[str], *, classes: str, k_range: str, repeats: int, out: Path, stack: bool,
    options: dict[str, Any], seed: int, specimen: Path | None, name: str, overwrite: bool,
    progress: ProgressCallback | None,
) -> tuple[list[Path], list[str]]:
    """The body of ``metallo segment-unsupervised``; returns the files written and the images whose
    result failed its quality check (DOUBTFUL)."""
    import json

    import numpy as np
    import pandas as pd
    import xarray as xr
    from rich.console import Console

    from metallo import names
    from metallo.errors import ConfigError
    from metallo.segment._criteria import segmentation_criteria
    from metallo.segment._infer import overlay_rgb
    from metallo.segment._unsupervised import (
        choose_n_classes,
        plot_criteria,
        unsupervised,
        unsupervised_stack,
    )

    console = Console(highlight=False)
    n_classes = _parse_classes(classes)
    options = {k: v for k, v in options.items() if v is not None}
    if not images:
        raise ConfigError("no images given")
    spec = None
    if specimen is not None:
        from metallo.specimen import Specimen

        spec = Specimen.open(specimen)
        loaded = []
        for node in images:
            if node not in spec:
                raise ConfigError(f"{specimen}: no node {node!r}; micrograph nodes: "
                                  f"{names.members(spec.nodes(), names.MICROGRAPHS)}")
            data = spec[node]
            loaded.append(data["image"] if isinstance(data, xr.Dataset) else data)
        stems = [node.rsplit("/", 1)[-1] for node in images]
    else:
        from metallo.io import read_image

        loaded = [read_image(path) for path in images]
        stems = [Path(path).stem for path in images]

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    k_tables = []
    if n_classes is None:
        # 'auto' picks k on the first image (or each image when segmented separately).
        targets = loaded[:1] if stack else loaded
        chosen = []
        for stem, image in zip(stems, targets, strict=False):
            best, table = choose_n_classes(image, k_range=_k_values(k_range), repeats=repeats, seed=seed,
                                           progress=progress, **options)
            chosen.append(best)
            table.insert(0, "image", stem)
            k_tables.append(table)
            written.append(plot_criteria(table, out / f"{stem}_criteria_vs_k.png"))
            console.print(f"{stem}: chose {best} classes (lowest mean F over {repeats} runs)")
        atomic_write_text(out / "criteria_vs_k.csv", pd.concat(k_tables).to_csv())
        written.append(out / "criteria_vs_k.csv")
    else:
        chosen = [n_classes] * (1 if stack else len(loaded))

    if stack:
        maps = unsupervised_stack(loaded, n_classes=chosen[0], seed=seed, progress=progress, **options)
    else:
        maps = []
        for image, k in zip(loaded, chosen, strict=True):
            maps.append(unsupervised(image, n_classes=k, seed=seed, progress=progress, **options))

    from metallo._xarray import pixel_size_um
    from metallo.io import write_image

    rows, doubtful = [], []
    for stem, source, image, labels in zip(stems, images, loaded, maps, strict=True):
        values = np.asarray(image.values)
        label_path = out / f"{stem}_labels.png"
        overlay_path = out / f"{stem}_overlay.png"
        write_image(labels.astype(np.uint8), label_path)
        write_image(overlay_rgb(values, labels.values), overlay_path, pixel_size_um=pixel_size_um(labels))
        written += [label_path, overlay_path]
        crit = segmentation_criteria(values, labels.values)
        quality = json.loads(labels.attrs.get("quality", "{}"))
        rows.append({"image": stem, "n_classes": labels.attrs["n_classes"],
                     "n_iterations": labels.attrs["n_iterations"], "stop_reason": labels.attrs["stop_reason"],
                     "quality_passed": quality.get("passed"), **crit})
        if quality and not quality["passed"]:
            console.print(f"[bold red]{stem}: DOUBTFUL[/] " + "; ".join(quality["reasons"]))
            doubtful.append(stem)
        if spec is not None:
            node = names.segmentation(name if len(images) == 1 else f"{name}_{stem}")
            spec.add(node, labels, step=names.segment_step("unsupervised"), inputs=[source], overwrite=overwrite,
                     parameters={**json.loads(labels.attrs["config"]), "criteria": crit})
            console.print(f"{source} -> {node}")
    table = pd.DataFrame(rows)
    atomic_write_text(out / "criteria.csv", table.to_csv(index=False))
    written.append(out / "criteria.csv")
    if spec is not None:
        spec.save()
    console.print(table.to_string(index=False))
    console.print(f"written to {out}")
    return written, doubtful
