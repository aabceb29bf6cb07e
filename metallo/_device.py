"""Device selection for the torch code paths (segmentation, the EBSD misorientation kernel).

A foundation module: every step package that runs torch resolves its ``device`` option here,
so none of them imports another step package's private helpers for it. torch is imported
only when a device is resolved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metallo.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device a ``device`` option names.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device
        ``"auto"``: CUDA when available, else CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        For an unknown name, or ``"cuda"`` where torch sees no CUDA GPU.

    Examples
    --------
    >>> resolve_device("cpu").type
    'cpu'
    """
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda'; got {device!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but no CUDA GPU is available; use device='cpu' or 'auto'")
    return torch.device(name)
