"""Checkpoints of trained segmentation models and device selection.

A checkpoint is a ``torch.save`` of a plain dict that carries everything prediction needs:
the model name and options, its weights, the class names, the normalisation, the pixel size
and tile settings it was trained with, and the validation metrics.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch

from metallo._device import resolve_device
from metallo._version import __version__
from metallo.errors import ModelError, UnknownNameError
from metallo.segment._models import SegmentationModel, get_model

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "metallo.segment.checkpoint/1"


def cpu_has_native_bfloat16() -> bool:
    """True on CPUs with bfloat16 matrix units (Intel AMX or AVX512-BF16), where oneDNN runs
    bfloat16 convolutions 2-3x faster than float32; elsewhere bfloat16 would be slower."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The mixed-precision dtype of training on ``device`` (None: float32 throughout).

    float16 on CUDA (with gradient scaling); bfloat16 on a CPU with native bfloat16 units (no
    scaling needed: bfloat16 has float32's exponent range); float32 on other CPUs.

    Examples
    --------
    >>> autocast_dtype(torch.device("cpu"), amp=False) is None
    True
    """
    if not amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bfloat16():
        return torch.bfloat16
    return None


def save_checkpoint(path: str | Path, model: SegmentationModel, *, classes: list[str], mean: list[float], std: list[float],
                    pixel_size_um: float | None = None, tile: dict[str, Any] | None = None,
                    metrics: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                    ignore_index: int = 255) -> Path:
    """Write a checkpoint dict with ``torch.save``.

    Parameters
    ----------
    path : str or Path
    model : SegmentationModel
        A model built by :func:`get_model` (its name and ``config`` rebuild it).
    classes : list of str
    mean, std : list of float
        Per-channel normalisation of [0, 1] intensities.
    pixel_size_um : float, optional
        Pixel size of the training images (before any down-scaling).
    tile : dict, optional
        ``size``, ``overlap``, ``scale`` used in training.
    metrics, config : dict, optional
    ignore_index : int

    Returns
    -------
    Path

    Examples
    --------
    >>> model = get_model("unet", n_classes=2, base_channels=4)
    >>> save_checkpoint("unet.pt", model, classes=["a", "b"], mean=[0.5], std=[0.2])
    PosixPath('unet.pt')
    """
    name = model.model_name if isinstance(model, SegmentationModel) else ""
    if not name:
        raise ModelError("only models built by metallo.segment.get_model can be saved as checkpoints")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": name,
        "model_kwargs": {"n_classes": model.n_classes, "in_channels": model.in_channels, **model.config},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "classes": list(classes),
        "ignore_index": int(ignore_index),
        "normalization": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "pixel_size_um": None if pixel_size_um is None else float(pixel_size_um),
        "tile": dict(tile or {}),
        "metrics": dict(metrics or {}),
        "config": dict(config or {}),
        "metallo_version": __version__,
    }
    torch.save(payload, path)
    return path


def load_checkpoint(checkpoint: str | Path | dict[str, Any], *, model: str | None = None,
                    device: str | torch.device = "cpu") -> tuple[SegmentationModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint, in eval mode, on ``device``.

    Parameters
    ----------
    checkpoint : str, Path or dict
        A file written by :func:`save_checkpoint` (or ``train``), or its loaded dict.
    model : str, optional
        Expected model name; a checkpoint of another model raises :class:`ModelError`.
    device : str

    Returns
    -------
    model : SegmentationModel
    info : dict
        The checkpoint without ``state_dict``, plus ``sha256`` of the file.

    Examples
    --------
    >>> _ = save_checkpoint("unet.pt", get_model("unet", n_classes=2, base_channels=4),
    ...                     classes=["ferrite", "pearlite"], mean=[0.5], std=[0.2])
    >>> net, info = load_checkpoint("unet.pt")
    >>> info["classes"], net.model_name
    (['ferrite', 'pearlite'], 'unet')
    """
    label = str(checkpoint) if not isinstance(checkpoint, dict) else "checkpoint"
    sha = ""
    if isinstance(checkpoint, dict):
        payload = checkpoint
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise ModelError(f"{path}: checkpoint file not found")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            # torch's own message is a paragraph about weights_only; its first sentence says enough.
            reason = str(exc).splitlines()[0].split(". ")[0] if str(exc) else type(exc).__name__
            raise ModelError(
                f"{path}: not a readable metallo checkpoint ({reason}); expected a file written by metallo train"
            ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{label}: not a metallo segmentation checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    name = payload["model"]
    if model is not None and str(model).lower() != name:
        raise ModelError(f"{label}: checkpoint holds model {name!r}, not {model!r}")
    try:
        net = get_model(name, **payload["model_kwargs"])
    except UnknownNameError as exc:
        raise ModelError(f"{label}: {exc}") from None
    try:
        result = net.load_state_dict(payload["state_dict"], strict=False)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "mismatch" in line), str(exc).splitlines()[0])
        raise ModelError(f"{label}: weights do not fit model {name!r} ({detail})") from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"{label}: weights do not fit model {name!r} (missing {len(result.missing_keys)} tensors e.g. "
            f"{result.missing_keys[:2]}, unexpected {len(result.unexpected_keys)} e.g. {result.unexpected_keys[:2]})"
        )
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    info["sha256"] = sha
    net.metallo_info = info
    net.to(resolve_device(device)).eval()
    return net, info
