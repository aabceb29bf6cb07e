"""Optional torch path of the misorientation kernel (large batches on a GPU).

Imported only when a ``device`` is passed, so ``import metallo`` never imports torch. The
maths is that of :mod:`metallo.ebsd._symmetry` (cubic closed form, other groups reduced over
their operators), in float64. The caller passes the symmetry operators, so this module does
not import :mod:`metallo.ebsd._symmetry` back (no import cycle).
"""

from __future__ import annotations

import numpy as np

from metallo._device import resolve_device

__all__ = ["misorientation_angle_torch"]


def misorientation_angle_torch(
    q1: np.ndarray, q2: np.ndarray, *, operators: np.ndarray | None, device: str = "auto"
) -> np.ndarray:
    """Disorientation angles in degrees, computed with torch on ``device``.

    ``operators`` are the Laue group's proper rotations as quaternions, (n, 4); None selects
    the closed form of the cubic group m-3m.
    """
    import torch

    dev = resolve_device(device)
    a = torch.as_tensor(np.asarray(q1, dtype=np.float64), device=dev)
    b = torch.as_tensor(np.asarray(q2, dtype=np.float64), device=dev)
    a, b = torch.broadcast_tensors(a, b)
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    d = torch.stack([
        aw * bw + ax * bx + ay * by + az * bz,
        ax * bw - aw * bx - ay * bz + az * by,
        ay * bw - aw * by + ax * bz - az * bx,
        az * bw - aw * bz - ax * by + ay * bx,
    ], dim=-1)
    if operators is None:
        s = torch.sort(d.abs(), dim=-1).values
        w = torch.maximum(s[..., 3], (s[..., 3] + s[..., 2]) * np.sqrt(0.5))
        w = torch.maximum(w, 0.5 * s.sum(dim=-1))
    else:
        ops = torch.tensor(np.asarray(operators, dtype=np.float64), device=dev)
        w = (d @ ops.T).abs().amax(dim=-1)
    angle = torch.rad2deg(2.0 * torch.arccos(w.clamp(max=1.0)))
    return angle.cpu().numpy()
