"""Segmentation of micrographs: supervised CNNs (U-Net, VGG16 U-Net, PixelNet) and the
unsupervised CNN + superpixel method.

Names are resolved lazily so that ``import metallo.segment`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> private module that defines it. The supervised engineer owns _SUPERVISED,
# the unsupervised engineer owns _UNSUPERVISED.
_SUPERVISED: dict[str, str] = {
    "get_model": "metallo.segment._models",
    "model_names": "metallo.segment._models",
    "register_model": "metallo.segment._models",
    "padded_size": "metallo.segment._models",
    "SegmentationModel": "metallo.segment._models",
    "UNet": "metallo.segment._models",
    "UNetVGG16": "metallo.segment._models",
    "PixelNet": "metallo.segment._models",
    "VGG16": "metallo.segment._vgg",
    "load_vgg16_state_dict": "metallo.segment._vgg",
    "vgg16_weights_path": "metallo.segment._vgg",
    "get_loss": "metallo.segment._losses",
    "loss_names": "metallo.segment._losses",
    "FocalLoss": "metallo.segment._losses",
    "DiceLoss": "metallo.segment._losses",
    "LovaszSoftmaxLoss": "metallo.segment._losses",
    "inverse_frequency_weights": "metallo.segment._losses",
    "boundary_errors": "metallo.segment._metrics",
    "boundary_band": "metallo.segment._data",
    "boundary_summary": "metallo.segment._metrics",
    "confusion_matrix": "metallo.segment._metrics",
    "metrics_from_confusion": "metallo.segment._metrics",
    "segmentation_metrics": "metallo.segment._metrics",
    "mean_iou": "metallo.segment._metrics",
    "pixel_accuracy": "metallo.segment._metrics",
    "Augment": "metallo.segment._data",
    "LabelledImage": "metallo.segment._data",
    "SegmentationData": "metallo.segment._data",
    "TileDataset": "metallo.segment._data",
    "default_tile_size": "metallo.segment._data",
    "load_training_folder": "metallo.segment._data",
    "segmentation_data_from_specimen": "metallo.segment._data",
    "mirror_index": "metallo.segment._data",
    "save_checkpoint": "metallo.segment._checkpoint",
    "load_checkpoint": "metallo.segment._checkpoint",
    "resolve_device": "metallo._device",
    "predict": "metallo.segment._infer",
    "predict_files": "metallo.segment._infer",
    "predict_to_specimen": "metallo.segment._infer",
    "blend_window": "metallo.segment._infer",
    "predict_array": "metallo.segment._infer",
    "predict_maps": "metallo.segment._infer",
    "plan_inference": "metallo.segment._infer",
    "InferencePlan": "metallo.segment._infer",
    "receptive_radius": "metallo.segment._footprint",
    "activation_bytes_per_pixel": "metallo.segment._footprint",
    "ensemble_checkpoints": "metallo.segment._infer",
    "export_onnx": "metallo.segment._onnx",
    "load_onnx": "metallo.segment._onnx",
    "OnnxModel": "metallo.segment._onnx",
    "TrainConfig": "metallo.segment._train",
    "TrainResult": "metallo.segment._train",
    "CVResult": "metallo.segment._train",
    "train": "metallo.segment._train",
    "cross_validate": "metallo.segment._train",
    "evaluate": "metallo.segment._train",
    "fold_indices": "metallo.segment._train",
    "pretrain": "metallo.segment._pretrain",
    "PretrainResult": "metallo.segment._pretrain",
    "unlabelled_images": "metallo.segment._pretrain",
    "load_initial_weights": "metallo.segment._checkpoint",
    "grad_cam": "metallo.segment._explain",
    "dissect_activations": "metallo.segment._explain",
    "save_grad_cam_figure": "metallo.segment._explain",
    "save_dissection_figure": "metallo.segment._explain",
}
_UNSUPERVISED: dict[str, str] = {
    "unsupervised": "metallo.segment._unsupervised",
    "unsupervised_stack": "metallo.segment._unsupervised",
    "unsupervised_settings": "metallo.segment._unsupervised",
    "unsupervised_quality": "metallo.segment._unsupervised",
    "PRESETS": "metallo.segment._unsupervised",
    "choose_n_classes": "metallo.segment._unsupervised",
    "plot_criteria": "metallo.segment._unsupervised",
    "refine_by_superpixels": "metallo.segment._unsupervised",
    "SuperpixelRefinement": "metallo.segment._unsupervised",
    "slic_superpixels": "metallo.segment._superpixels",
    "criterion_f": "metallo.segment._criteria",
    "criterion_f_prime": "metallo.segment._criteria",
    "criterion_q": "metallo.segment._criteria",
    "segmentation_criteria": "metallo.segment._criteria",
    "region_statistics": "metallo.segment._criteria",
    "adjusted_rand_index": "metallo.segment._criteria",
}

# The step adapter (Specimen in, segmentations/<name> out), shared by the pipeline and the CLI.
_ADAPTER: dict[str, str] = {"segment_step": "metallo.segment._adapter"}

_LAZY = {**_SUPERVISED, **_UNSUPERVISED, **_ADAPTER}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metallo.segment' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
