"""Device selection for the torch code paths (segmentation, the EBSD misorientation kernel).

A foundation module: every step package that runs torch resolves its ``device`` option here,
so none of them imports another step package's private helpers for it, and seeds torch here
without touching the caller's random state. torch is imported only when one of these runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from metallo.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["resolve_device", "torch_seeded"]


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


@contextmanager
def torch_seeded(seed: int, device: torch.device | None = None, *, deterministic: bool = False) -> Iterator[None]:
    """Seed torch for a block of code and give the caller's random state back afterwards.

    torch draws weight initialisation and dropout from its global generators. Inside this
    block the CPU generator (and that of ``device`` when it is a CUDA device) is forked and
    seeded with ``seed``; on exit the generators, and the cuDNN flags that ``deterministic``
    sets, are what they were, so a library call never reseeds its caller's torch. This is
    the one place where metallo seeds torch's global generators; everything else draws from
    explicit ``torch.Generator`` or ``numpy.random.Generator`` objects.

    Parameters
    ----------
    seed : int
        Seed of the forked generators.
    device : torch.device, optional
        The device the block computes on.
    deterministic : bool
        Also make cuDNN pick deterministic algorithms (no autotuning) inside the block.

    Examples
    --------
    >>> import torch
    >>> before = torch.random.get_rng_state()
    >>> with torch_seeded(0):
    ...     a = torch.rand(2)
    >>> with torch_seeded(0):
    ...     b = torch.rand(2)
    >>> bool(torch.equal(a, b)), bool(torch.equal(before, torch.random.get_rng_state()))
    (True, True)
    """
    import torch

    cuda = device is not None and device.type == "cuda"
    cudnn = torch.backends.cudnn
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        if deterministic:
            with cudnn.flags(enabled=cudnn.enabled, benchmark=False, deterministic=True):
                yield
        else:
            yield
