"""Checkpoints of trained segmentation models and device selection.

A checkpoint is a ``torch.save`` of a plain dict that carries everything prediction needs:
the model name and options, its weights, the class names, the normalisation, the pixel size
and tile settings it was trained with, and the validation metrics.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from metallo._device import resolve_device
from metallo._version import __version__
from metallo.errors import ConfigError, ModelError, UnknownNameError
from metallo.segment._models import SegmentationModel, get_model

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "load_initial_weights", "save_checkpoint"]

CHECKPOINT_FORMAT = "metallo.segment.checkpoint/1"
_DIGEST = "content_sha256"


def _content_digest(payload: dict[str, Any]) -> str:
    """SHA-256 of the checkpoint's metadata (as JSON) and every tensor's dtype, shape and bytes.

    torch checks no checksum when loading, so a flipped byte in a weight or a class name would
    otherwise load silently.
    """
    import json

    digest = hashlib.sha256()
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", _DIGEST)}
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for key in sorted(payload["state_dict"]):
        tensor = payload["state_dict"][key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _finite_list(value: Any, *, positive: bool = False) -> bool:
    import math

    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and (v > 0 or not positive) for v in value)
    )


def _check_payload(payload: dict[str, Any], label: str) -> None:
    """Refuse a checkpoint whose fields have the wrong type or impossible values."""
    import math

    def bad(field: str, expected: str) -> ModelError:
        return ModelError(f"{label}: checkpoint field {field!r}: expected {expected}; got {str(payload.get(field))[:80]!r}")

    if not isinstance(payload.get("model"), str):
        raise bad("model", "a model name")
    kwargs = payload.get("model_kwargs")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise bad("model_kwargs", "a dict of model options")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise bad("state_dict", "a dict of tensors")
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise bad("state_dict", "finite weights (NaN or infinite values found)")
    classes = payload.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "a list of class names")
    norm = payload.get("normalization")
    if not (isinstance(norm, dict) and _finite_list(norm.get("mean")) and _finite_list(norm.get("std"), positive=True)):
        raise bad("normalization", "{'mean': [finite numbers], 'std': [positive numbers]}")
    ps = payload.get("pixel_size_um")
    if ps is not None and not (isinstance(ps, (int, float)) and math.isfinite(ps) and ps > 0):
        raise bad("pixel_size_um", "a positive pixel size in µm or None")
    ignore = payload.get("ignore_index", 255)
    if not isinstance(ignore, int) or not 0 <= ignore <= 255:
        raise bad("ignore_index", "an integer 0-255")
    for field in ("tile", "metrics", "config", "novelty"):
        if not isinstance(payload.get(field, {}), dict):
            raise bad(field, "a dict")


def _check_digest(payload: dict[str, Any], label: str) -> None:
    """Refuse a checkpoint whose content changed after it was written (checkpoints from before
    the digest have none and are not checked)."""
    expected = payload.get(_DIGEST)
    if expected is not None and expected != _content_digest(payload):
        raise ModelError(
            f"{label}: the checkpoint's content does not match its {_DIGEST} (corrupt file); "
            "expected a file written by metallo train"
        )


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
                    ignore_index: int = 255, novelty: dict[str, Any] | None = None) -> Path:
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
    novelty : dict, optional
        The training images' novelty reference (:func:`metallo.segment._novelty.build_reference`).

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
        # Plain JSON types only: torch.load(weights_only=True) refuses a pathlib.Path (out_dir=Path(...)).
        "config": json.loads(json.dumps(dict(config or {}), default=str)),
        "novelty": dict(novelty or {}),
        "metallo_version": __version__,
    }
    payload[_DIGEST] = _content_digest(payload)
    from metallo._atomic import atomic_path

    with atomic_path(path) as tmp:  # a crash mid-write leaves the previous checkpoint, not half of one
        torch.save(payload, tmp)
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
        except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError, KeyError,
                AttributeError, TypeError, IndexError, MemoryError, zipfile.BadZipFile, AssertionError,
                struct.error) as exc:
            # torch's own message is a paragraph about weights_only; its first sentence says enough.
            reason = str(exc).splitlines()[0].split(". ")[0][:160] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"{path}: not a readable metallo checkpoint ({reason}); expected a file written by metallo train"
            ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{label}: not a metallo segmentation checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    _check_payload(payload, label)
    name = payload["model"]
    if model is not None and str(model).lower() != name:
        raise ModelError(f"{label}: checkpoint holds model {name!r}, not {model!r}")
    # Build on the meta device first (no memory): options that a corrupt file inflates must not
    # allocate a model the weights in the file do not describe.
    try:
        with torch.device("meta"):
            shell = get_model(name, **payload["model_kwargs"])
    except (UnknownNameError, ConfigError, TypeError, ValueError) as exc:
        raise ModelError(f"{label}: model {name!r} cannot be built from the checkpoint's options ({exc})") from None
    expected = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in payload["state_dict"].items()}
    if expected != stored:
        wrong = sorted(set(expected) ^ set(stored)) or [k for k in expected if expected[k] != stored[k]]
        raise ModelError(
            f"{label}: weights do not fit model {name!r} ({len(wrong)} tensors missing, unexpected or "
            f"of the wrong shape, e.g. {wrong[0]!r})"
        )
    del shell
    _check_digest(payload, label)
    try:
        net = get_model(name, **payload["model_kwargs"])
    except (UnknownNameError, ConfigError) as exc:
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


def _output_layer(model: SegmentationModel) -> str:
    """Prefix of the model's output layer: the last weight with one row per class (``head.``, PixelNet's ``mlp.7.``)."""
    keys = [k for k, v in model.state_dict().items() if k.endswith(".weight") and v.shape[:1] == (model.n_classes,)]
    return keys[-1][: -len("weight")] if keys else "head."


def load_initial_weights(model: SegmentationModel, source: str | Path, *, head: Sequence[str] | None = None) -> dict[str, Any]:
    """Copy the weights of a checkpoint (pretrained or trained) into ``model``, all but its output layer.

    Parameters
    ----------
    model : SegmentationModel
        The freshly built network (same architecture and options as the checkpoint's).
    source : str or Path
        A :func:`~metallo.segment.pretrain` output or any metallo segmentation checkpoint.
    head : sequence of str, optional
        Prefixes of the output-layer tensors, which stay freshly initialised (their shape
        follows the number of classes). Default: the model's last layer with one output per
        class (``head.`` of the U-Nets, ``mlp.7.`` of PixelNet).

    Returns
    -------
    dict
        ``path``, ``sha256``, ``pretext`` (or None), ``loaded`` and ``kept_fresh`` tensor counts.

    Raises
    ------
    ConfigError
        The checkpoint holds another architecture, or a tensor of another shape (other
        ``base_channels``, ``in_channels``): the message names the file and the tensor.
    """
    try:
        source_net, info = load_checkpoint(source)
    except ModelError as exc:
        raise ConfigError(f"init_weights: {exc}") from None
    if source_net.model_name != model.model_name:
        raise ConfigError(f"{source}: init_weights holds model {source_net.model_name!r}, training builds "
                          f"{model.model_name!r}; pretrain with the same model")
    head = (_output_layer(model),) if head is None else tuple(head)
    given = source_net.state_dict()
    target = model.state_dict()
    loaded, fresh = 0, 0
    update = {}
    for key, tensor in target.items():
        if any(key.startswith(h) for h in head):
            fresh += 1
            continue
        if key not in given or tuple(given[key].shape) != tuple(tensor.shape):
            found = "missing" if key not in given else f"shape {tuple(given[key].shape)}"
            raise ConfigError(f"{source}: init_weights tensor {key!r} does not fit the model ({found}, expected "
                              f"{tuple(tensor.shape)}); pretrain with the same model options {model.config}")
        update[key] = given[key].to(tensor.device, tensor.dtype)
        loaded += 1
    model.load_state_dict(update, strict=False)
    return {"path": str(source), "sha256": info.get("sha256", ""), "pretext": info.get("config", {}).get("pretext"),
            "loaded": loaded, "kept_fresh": fresh}
