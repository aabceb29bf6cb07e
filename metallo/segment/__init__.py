"""Segmentation of micrographs: supervised CNNs (U-Net, VGG16 U-Net, PixelNet) and the
unsupervised CNN + superpixel method.

Names are resolved lazily so that ``import metallo.segment`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> private module that defines it. The supervised engineer owns _SUPERVISED,
# the unsupervised engineer owns _UNSUPERVISED.
_SUPERVISED: dict[str, str] = {}
_UNSUPERVISED: dict[str, str] = {}

_LAZY = {**_SUPERVISED, **_UNSUPERVISED}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metallo.segment' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
