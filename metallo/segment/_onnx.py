"""ONNX export of segmentation checkpoints and an ONNX Runtime engine for CPU prediction.

ONNX is how other tools (Fiji/DeepImageJ, napari plugins, vendor software) import models. The
exported graph takes ``image`` ``(batch, in_channels, H, W)`` with H and W multiples of the
model's ``size_multiple`` (dynamic) and returns ``logits`` ``(batch, n_classes, H, W)``; the
normalisation, classes, pixel size and the measured receptive field and activation size travel
in the file's metadata (key ``metallo``, JSON), so :func:`load_onnx` rebuilds everything
:func:`~metallo.segment.predict` needs. Needs the optional extra ``metallo[onnx]``
(``onnx`` to export, ``onnxruntime`` to run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metallo.errors import ConfigError, ModelError
from metallo.segment._checkpoint import load_checkpoint
from metallo.segment._footprint import activation_bytes_per_pixel, receptive_radius
from metallo.segment._models import _mirror_pad, padded_size

__all__ = ["OnnxModel", "export_onnx", "load_onnx"]

_METADATA_KEY = "metallo"


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"ONNX support needs the package {module!r}: pip install 'metallo[onnx]'") from None


def export_onnx(checkpoint: Any, path: str | Path | None = None, *, opset: int = 17) -> Path:
    """Export a checkpoint to ONNX (dynamic batch, height and width).

    Parameters
    ----------
    checkpoint : str, Path or dict
        A checkpoint written by ``metallo train``.
    path : str or Path, optional
        Output file (default: the checkpoint's path with suffix ``.onnx``).
    opset : int
        ONNX opset version.

    Returns
    -------
    Path

    Examples
    --------
    >>> export_onnx("runs/uhcs/model.pt")  # doctest: +SKIP
    PosixPath('runs/uhcs/model.onnx')
    """
    onnx = _require("onnx")
    model, info = load_checkpoint(checkpoint, device="cpu")
    if path is None:
        if isinstance(checkpoint, dict):
            raise ConfigError("export_onnx of a checkpoint dict needs an output path")
        path = Path(checkpoint).with_suffix(".onnx")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    side = padded_size((64, 64), model.size_multiple)
    dummy = torch.zeros(1, model.in_channels, *side)
    meta = {k: v for k, v in info.items() if k != "config"}
    augment = (info.get("config") or {}).get("augment")
    if isinstance(augment, dict):
        # The zooms the model was trained with: predict's unseen-scale check allows for them.
        meta["config"] = {"augment": augment}
    meta.update(n_classes=model.n_classes, in_channels=model.in_channels, size_multiple=model.size_multiple,
                bytes_per_pixel=activation_bytes_per_pixel(model), receptive_radius_px=receptive_radius(model),
                source_sha256=info.get("sha256", ""))
    tmp = out.with_name(out.name + ".tmp")
    with torch.no_grad():
        # The graph is the model's dense path; OnnxModel pads inputs to the size multiple itself.
        torch.onnx.export(_DenseLogits(model), (dummy,), str(tmp), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                        "logits": {0: "batch", 2: "height", 3: "width"}},
                          opset_version=opset, dynamo=False)
    proto = onnx.load(str(tmp))
    entry = proto.metadata_props.add()
    entry.key, entry.value = _METADATA_KEY, json.dumps(meta, default=float)
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    return out


class _DenseLogits(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense = self.model.dense_logits
        assert callable(dense)
        return dense(x)


class OnnxModel(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` interface that prediction uses (CPU).

    Inputs whose sides are not multiples of ``size_multiple`` are mirror-padded as the torch
    model does. ``n_classes``, ``in_channels``, ``size_multiple``, ``bytes_per_pixel`` and
    ``receptive_radius_px`` come from the export metadata.

    Parameters
    ----------
    path : str or Path
        An ``.onnx`` file written by :func:`export_onnx`.
    threads : int, optional
        Intra-op threads (default: torch's thread count).

    Examples
    --------
    >>> net = OnnxModel("model.onnx")  # doctest: +SKIP
    >>> net(torch.zeros(1, 1, 64, 64)).shape  # doctest: +SKIP
    torch.Size([1, 4, 64, 64])
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        super().__init__()
        ort = _require("onnxruntime")
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: ONNX model file not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        # onnxruntime's errors (InvalidProtobuf, Fail, ...) derive from Exception alone.
        errors = tuple(getattr(ort.capi.onnxruntime_pybind11_state, name) for name in ("InvalidProtobuf", "Fail",
                                                                                        "InvalidGraph", "NoSuchFile"))
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except errors as exc:
            raise ModelError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map.get(_METADATA_KEY)
        if meta is None:
            raise ModelError(f"{path}: no metallo metadata; export it with metallo export MODEL.pt --onnx")
        self.metallo_info: dict[str, Any] = json.loads(meta)
        self.n_classes = int(self.metallo_info["n_classes"])
        self.in_channels = int(self.metallo_info["in_channels"])
        self.size_multiple = int(self.metallo_info["size_multiple"])
        self.bytes_per_pixel = float(self.metallo_info["bytes_per_pixel"])
        self.receptive_radius_px = int(self.metallo_info["receptive_radius_px"])
        self.model_name = str(self.metallo_info.get("model", "onnx"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        target = padded_size((h, w), self.size_multiple)
        padded = _mirror_pad(x.float().cpu(), target)
        (logits,) = self.session.run(["logits"], {"image": np.ascontiguousarray(padded.numpy())})
        return torch.from_numpy(logits)[..., :h, :w]


def load_onnx(path: str | Path, *, threads: int | None = None) -> tuple[OnnxModel, dict[str, Any]]:
    """An ONNX export as ``(model, info)`` for :func:`~metallo.segment.predict`.

    Parameters
    ----------
    path : str or Path
    threads : int, optional

    Returns
    -------
    model : OnnxModel
    info : dict
        The checkpoint information stored at export (classes, normalisation, tile, metrics),
        with ``sha256`` of the ONNX file.

    Examples
    --------
    >>> model, info = load_onnx("runs/uhcs/model.onnx")  # doctest: +SKIP
    """
    import hashlib

    model = OnnxModel(path, threads=threads)
    info = dict(model.metallo_info)
    info["sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return model, info
