"""``make_specimen``: a correlative ferrite + lath-bainite specimen (EBSD, LOM, SEM) with truth.

References
----------
.. [1] A. R. Durmaz, M. Müller, B. Lei, A. Thomas, D. Britz, E. A. Holm, C. Eberl, F. Mücklich,
   P. Gumbsch, "A deep learning approach for complex microstructure inference",
   Nature Communications 12, 6272 (2021). doi:10.1038/s41467-021-26565-5
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from metallo._xarray import image_dataarray
from metallo.ebsd import ebsd_dataset, quat_to_euler, random_quaternions
from metallo.errors import ConfigError
from metallo.synth._microstructure import BAINITE, CLASSES, Microstructure
from metallo.synth._render import ebsd_columns, render_lom, render_sem
from metallo.synth._transforms import FieldTransform, random_field_transform

__all__ = ["SynthSpecimen", "ebsd_points_um", "make_specimen"]

FERRITE_PHASE = {
    "id": 0,
    "name": "ferrite",
    "symmetry": "m-3m",
    "lattice": [2.87, 2.87, 2.87, 90.0, 90.0, 90.0],
}


@dataclass
class SynthSpecimen:
    """A synthetic correlative specimen and its ground truth.

    Attributes
    ----------
    ebsd : xr.Dataset
        EBSD map on the metallo layout (euler, phase, ci, iq, fit), ``source="metallo.synth"``.
    grain_ids : ndarray (y, x) int32
        True grain of each EBSD point (a ferrite grain or a bainite block).
    grain_quaternions : ndarray (n_grains, 4)
        Mean orientation of each grain (over its EBSD points; the block orientation for
        grains outside the EBSD field).
    constituent : ndarray (y, x) uint8
        0 polygonal ferrite, 1 lath bainite, on the EBSD grid.
    classes : list of str
        ``["polygonal_ferrite", "lath_bainite"]`` (index = constituent value).
    lom, sem : xr.DataArray or None
        Micrographs (uint8, modality ``"LOM"`` / ``"SEM"``) with their own pixel sizes;
        ``None`` when made with ``micrographs=False``.
    lom_labels, sem_labels : ndarray uint8
        Constituent under every micrograph pixel.
    lom_field, sem_field : ndarray bool
        True where the micrograph pixel lies inside the EBSD field.
    truth : dict
        Generation parameters and exact answers: transforms, grain table, gradients, ...
    """

    ebsd: xr.Dataset
    grain_ids: np.ndarray
    grain_quaternions: np.ndarray
    constituent: np.ndarray
    lom: xr.DataArray | None
    sem: xr.DataArray | None
    lom_labels: np.ndarray | None
    sem_labels: np.ndarray | None
    lom_field: np.ndarray | None
    sem_field: np.ndarray | None
    truth: dict[str, Any]
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    _lom_transform: FieldTransform | None = field(default=None, repr=False)
    _sem_transform: FieldTransform | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        ny, nx = self.grain_ids.shape
        parts = [
            f"ebsd {ny}x{nx} at {self.ebsd.attrs['step_um']} µm ({self.ebsd.attrs['grid']})",
            f"{len(np.unique(self.grain_ids))} grains",
            f"bainite {self.truth['bainite_fraction']:.1%}",
        ]
        for name in ("lom", "sem"):
            image = getattr(self, name)
            if image is not None:
                parts.append(
                    f"{name} {image.shape[0]}x{image.shape[1]} at {image.attrs['pixel_size_um']} µm"
                )
        return f"SynthSpecimen(seed={self.truth['seed']}: {', '.join(parts)})"

    def ebsd_to_lom(self, points_yx_um: np.ndarray) -> np.ndarray:
        """EBSD µm (y, x) -> LOM µm (y, x): the known affine + smooth deformation."""
        return _transform(self._lom_transform, "lom").forward(points_yx_um)

    def lom_to_ebsd(self, points_yx_um: np.ndarray) -> np.ndarray:
        """LOM µm (y, x) -> EBSD µm (y, x), the exact inverse of :meth:`ebsd_to_lom`."""
        return _transform(self._lom_transform, "lom").inverse(points_yx_um)

    def ebsd_to_sem(self, points_yx_um: np.ndarray) -> np.ndarray:
        """EBSD µm (y, x) -> SEM µm (y, x)."""
        return _transform(self._sem_transform, "sem").forward(points_yx_um)

    def sem_to_ebsd(self, points_yx_um: np.ndarray) -> np.ndarray:
        """SEM µm (y, x) -> EBSD µm (y, x), the exact inverse of :meth:`ebsd_to_sem`."""
        return _transform(self._sem_transform, "sem").inverse(points_yx_um)

    def registration_error_px(self, registration: Any, micrograph: str = "lom", *, every: int = 2) -> np.ndarray:
        """Error of an EBSD -> micrograph registration against the known mapping, in micrograph pixels.

        Parameters
        ----------
        registration : metallo.correlate.Registration
            Anything with ``transform_points(points_yx_um)`` mapping EBSD µm to micrograph µm.
        micrograph : {"lom", "sem"}
            The fixed micrograph.
        every : int
            Every ``every``-th EBSD point along y and x is scored (those landing inside the
            micrograph, one pixel from its far edges).

        Returns
        -------
        ndarray
            One error (pixels) per scored point.

        Examples
        --------
        >>> spec = make_specimen(0, ebsd_shape=(40, 40))
        >>> class Exact:  # a registration that knows the answer
        ...     transform_points = spec.ebsd_to_lom
        >>> float(spec.registration_error_px(Exact()).max())
        0.0
        """
        forward = {"lom": self.ebsd_to_lom, "sem": self.ebsd_to_sem}
        if micrograph not in forward:
            raise ConfigError(f"micrograph must be 'lom' or 'sem'; got {micrograph!r}")
        iq = self.ebsd["iq"]
        ys, xs = np.meshgrid(iq.y.values[::every], iq.x.values[::every], indexing="ij")
        points = np.stack([ys.ravel(), xs.ravel()], 1)
        truth = forward[micrograph](points)
        image = getattr(self, micrograph)
        ps = float(image.attrs["pixel_size_um"])
        inside = np.all((truth > 0) & (truth < np.array(image.shape) * ps - ps), axis=1)
        return np.linalg.norm(registration.transform_points(points[inside]) - truth[inside], axis=1) / ps


def _transform(t: FieldTransform | None, name: str) -> FieldTransform:
    if t is None:
        raise ConfigError(
            f"this synthetic specimen has no {name} micrograph (made with micrographs=False)"
        )
    return t


def _grid_points(shape: tuple[int, int], step_um: float, grid: str = "square") -> np.ndarray:
    """(y, x) in µm of every grid point; on a hexagonal grid odd rows shift by half a step."""
    step_y = step_um * np.sqrt(3.0) / 2.0 if grid == "hexagonal" else step_um
    yy, xx = np.meshgrid(np.arange(shape[0]) * step_y, np.arange(shape[1]) * step_um, indexing="ij")
    if grid == "hexagonal":
        xx = xx + 0.5 * step_um * (np.arange(shape[0]) % 2)[:, None]
    return np.stack([yy, xx], axis=-1)


def ebsd_points_um(ebsd: xr.Dataset) -> np.ndarray:
    """The (y, x) position in µm of every point of a square or hexagonal EBSD map.

    Parameters
    ----------
    ebsd : xr.Dataset
        EBSD map on the metallo layout.

    Returns
    -------
    ndarray, (ny, nx, 2)

    Examples
    --------
    >>> spec = make_specimen(0, ebsd_shape=(4, 4), grid="hexagonal", micrographs=False)
    >>> ebsd_points_um(spec.ebsd)[1, 0].round(3).tolist()
    [0.433, 0.25]
    """
    shape = (ebsd.sizes["y"], ebsd.sizes["x"])
    origin = np.array([float(ebsd.y[0]), float(ebsd.x[0])])
    return (
        _grid_points(shape, float(ebsd.attrs["step_um"]), str(ebsd.attrs.get("grid", "square")))
        + origin
    )


def _micrograph(array: np.ndarray, modality: str, pixel_size_um: float, seed: int) -> xr.DataArray:
    attrs = {
        "modality": modality,
        "source": f"metallo.synth seed={seed}",
        "sha256": hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest(),
    }
    return image_dataarray(array, pixel_size_um=pixel_size_um, name=modality.lower(), attrs=attrs)


def make_specimen(
    seed: int = 0,
    *,
    ebsd_shape: tuple[int, int] = (200, 200),
    step_um: float = 0.5,
    grid: str = "square",
    bainite_fraction: float = 0.35,
    grain_size_um: float = 7.0,
    cluster_size_um: float | None = None,
    block_size_um: float | None = None,
    embedded_ferrite: float = 0.05,
    lath_width_um: tuple[float, float] = (0.5, 1.0),
    lath_misorientation_deg: float = 3.0,
    gradient_deg_per_um: float = 1.5,
    orientation_noise_deg: float = 0.08,
    unindexed_fraction: float = 0.002,
    micrographs: bool = True,
    lom_pixel_size_um: float = 0.3,
    sem_pixel_size_um: float = 0.1,
    sem_fov_um: float | None = None,
    rotation_deg: tuple[float, float] = (1.0, 5.0),
    deformation_px: float = 3.0,
) -> SynthSpecimen:
    """Make a synthetic ferrite + lath-bainite specimen seen by EBSD, LOM and SEM.

    Parameters
    ----------
    seed : int
        Random seed; the same seed gives the same specimen.
    ebsd_shape : (int, int)
        EBSD map size (rows, columns).
    step_um : float
        EBSD step in µm.
    grid : {"square", "hexagonal"}
        EBSD grid; on a hexagonal grid (the scans of Durmaz et al. 2021) rows are
        ``step_um * sqrt(3) / 2`` apart and odd rows shift by half a step
        (positions: :func:`ebsd_points_um`).
    bainite_fraction : float
        Requested area fraction of lath bainite inside the EBSD field (0-1).
    grain_size_um : float
        Mean equivalent circle diameter of the grains (ferrite grains and bainite blocks).
    cluster_size_um : float, optional
        Size of the grain clusters that transform to bainite together (default 2.5 grains).
    block_size_um : float, optional
        Size of the bainite blocks (grains of parallel laths; default 1.6 grains).
    embedded_ferrite : float
        Probability that a grain of a bainite cluster stays polygonal ferrite.
    lath_width_um : (float, float)
        Range of the lath width (uniform per bainite block).
    lath_misorientation_deg : float
        Typical misorientation between neighbouring laths.
    gradient_deg_per_um : float
        Orientation gradient inside bainite blocks, along the laths.
    orientation_noise_deg : float
        EBSD measurement noise (rotation angle, capped at 3x this value).
    unindexed_fraction : float
        Fraction of EBSD points left unindexed (phase -1, CI -1).
    micrographs : bool
        Render the LOM and SEM micrographs (False: EBSD map and truth only, faster).
    lom_pixel_size_um, sem_pixel_size_um : float
        Micrograph pixel sizes in µm.
    sem_fov_um : float, optional
        Width of the SEM field (default: 0.6 of the EBSD field, at most 60 µm); its height
        is 3/4 of it and it overhangs the lower right edge of the EBSD field a little.
    rotation_deg : (float, float)
        Range of the micrograph rotation relative to the EBSD map (random sign).
    deformation_px : float
        Amplitude of the smooth EBSD -> micrograph deformation, in micrograph pixels.

    Returns
    -------
    SynthSpecimen

    Examples
    --------
    >>> spec = make_specimen(0, ebsd_shape=(60, 60), micrographs=False)
    >>> spec.ebsd.euler.shape
    (60, 60, 3)
    """
    if not 0.0 <= bainite_fraction <= 1.0:
        raise ConfigError(f"bainite_fraction must be in [0, 1]; got {bainite_fraction}")
    if len(ebsd_shape) != 2 or min(ebsd_shape) < 2:
        raise ConfigError(
            f"ebsd_shape must be (rows, columns) with at least 2 of each; got {ebsd_shape}"
        )
    if min(step_um, grain_size_um, lom_pixel_size_um, sem_pixel_size_um) <= 0:
        raise ConfigError("step_um, grain_size_um and the pixel sizes must be positive")
    if not 0 < lath_width_um[0] <= lath_width_um[1]:
        raise ConfigError(
            f"lath_width_um must be (min, max) with 0 < min <= max; got {lath_width_um}"
        )
    rng = np.random.default_rng(seed)
    ny, nx = (int(v) for v in ebsd_shape)
    if grid not in ("square", "hexagonal"):
        raise ConfigError(f"grid must be 'square' or 'hexagonal'; got {grid!r}")
    points = _grid_points((ny, nx), step_um, grid)
    extent = (float(points[-1, 0, 0]), float(points[..., 1].max()))
    margin = 0.3 * max(extent) + 3.0 * grain_size_um
    micro = Microstructure(
        rng,
        extent_um=extent,
        field_points_um=points.reshape(-1, 2),
        grain_size_um=grain_size_um,
        cluster_size_um=cluster_size_um or 2.5 * grain_size_um,
        block_size_um=block_size_um or 1.6 * grain_size_um,
        bainite_fraction=bainite_fraction,
        embedded_ferrite=embedded_ferrite,
        lath_width_um=lath_width_um,
        lath_misorientation_deg=lath_misorientation_deg,
        gradient_deg_per_um=gradient_deg_per_um,
        margin_um=margin,
    )
    sample = micro.sample(points)
    q_true = micro.orientations(sample)
    cols = ebsd_columns(sample, q_true, rng, step_um=step_um, noise_deg=orientation_noise_deg)
    phase = np.zeros((ny, nx), np.int16)
    unindexed = rng.random((ny, nx)) < unindexed_fraction
    phase[unindexed] = -1
    q_meas = cols["q"]
    q_meas[unindexed] = random_quaternions(int(unindexed.sum()), rng)
    ci = np.where(unindexed, -1.0, cols["ci"])
    iq = np.where(unindexed, 0.3 * cols["iq"], cols["iq"])
    ebsd = ebsd_dataset(
        quat_to_euler(q_meas),
        phase,
        step_um=step_um,
        grid=grid,
        phases=[FERRITE_PHASE],
        variables={"ci": ci, "iq": iq, "fit": cols["fit"]},
        source="metallo.synth",
    )
    grain_q = _mean_orientations(micro.quaternions, sample.grain, q_true)
    table = micro.grain_table()
    table["ebsd_points"] = np.bincount(sample.grain.ravel(), minlength=micro.n_grains)
    table["ebsd_area_um2"] = table["ebsd_points"] * step_um * float(ebsd.attrs["step_y_um"])
    truth: dict[str, Any] = {
        "seed": seed,
        "grid": grid,
        "grain_table": table,
        "grain_size_um": grain_size_um,
        "requested_bainite_fraction": bainite_fraction,
        "bainite_fraction": float(np.mean(sample.constituent == BAINITE)),
        "lath_width_um": tuple(lath_width_um),
        "lath_misorientation_deg": lath_misorientation_deg,
        "gradient_deg_per_um": gradient_deg_per_um,
        "orientation_noise_deg": orientation_noise_deg,
        "unindexed_points": int(unindexed.sum()),
        "boundary_distance_um": sample.boundary_distance_um,
    }
    spec = SynthSpecimen(
        ebsd=ebsd,
        grain_ids=sample.grain,
        grain_quaternions=grain_q,
        constituent=sample.constituent,
        lom=None,
        sem=None,
        lom_labels=None,
        sem_labels=None,
        lom_field=None,
        sem_field=None,
        truth=truth,
    )
    if micrographs:
        _add_micrographs(
            spec, micro, rng, seed=seed, ebsd_shape=(ny, nx), step_um=step_um, extent=extent,
            lom_ps=lom_pixel_size_um, sem_ps=sem_pixel_size_um, sem_fov_um=sem_fov_um,
            rotation_deg=rotation_deg, deformation_px=deformation_px,
        )  # fmt: skip
    return spec


def _mean_orientations(reference: np.ndarray, grain: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Mean quaternion of each grain over its points (q and -q aligned with the reference first)."""
    g = grain.ravel()
    qf = q.reshape(-1, 4)
    sign = np.sign(np.einsum("ij,ij->i", qf, reference[g]))
    qf = qf * np.where(sign == 0, 1.0, sign)[:, None]
    sums = np.stack(
        [np.bincount(g, weights=qf[:, c], minlength=len(reference)) for c in range(4)], axis=1
    )
    present = np.bincount(g, minlength=len(reference)) > 0
    out = reference.copy()
    out[present] = sums[present] / np.linalg.norm(sums[present], axis=1, keepdims=True)
    return np.where(out[:, :1] < 0, -out, out)


def _add_micrographs(
    spec: SynthSpecimen,
    micro: Microstructure,
    rng: np.random.Generator,
    *,
    seed: int,
    ebsd_shape: tuple[int, int],
    step_um: float,
    extent: tuple[float, float],
    lom_ps: float,
    sem_ps: float,
    sem_fov_um: float | None,
    rotation_deg: tuple[float, float],
    deformation_px: float,
) -> None:
    field_centre = (extent[0] / 2.0, extent[1] / 2.0)
    lom_margin = 0.1 * max(extent) + 2.0 * deformation_px * lom_ps
    # The bounding box of the field at the largest rotation (and 2 % scale error), plus margin.
    c, s = np.cos(np.deg2rad(max(rotation_deg))), np.sin(np.deg2rad(max(rotation_deg)))
    box = 1.02 * np.array([extent[0] * c + extent[1] * s, extent[1] * c + extent[0] * s])
    lom_shape = (
        int(np.ceil((box[0] + 2 * lom_margin) / lom_ps)),
        int(np.ceil((box[1] + 2 * lom_margin) / lom_ps)),
    )
    lom_t = random_field_transform(
        rng, ebsd_extent_um=extent, centre_ebsd_um=field_centre,
        centre_micrograph_um=((lom_shape[0] - 1) * lom_ps / 2.0, (lom_shape[1] - 1) * lom_ps / 2.0),
        rotation_deg=rotation_deg, scale_error=0.01, shear=0.005, deformation_um=deformation_px * lom_ps,
    )  # fmt: skip
    fov = sem_fov_um if sem_fov_um is not None else min(0.6 * max(extent), 60.0)
    sem_shape = (int(np.ceil(0.75 * fov / sem_ps)), int(np.ceil(fov / sem_ps)))
    sem_centre_ebsd = (
        extent[0] + 0.05 * fov - 0.75 * fov / 2.0,
        extent[1] + 0.05 * fov - fov / 2.0,
    )
    sem_t = random_field_transform(
        rng, ebsd_extent_um=extent, centre_ebsd_um=sem_centre_ebsd,
        centre_micrograph_um=((sem_shape[0] - 1) * sem_ps / 2.0, (sem_shape[1] - 1) * sem_ps / 2.0),
        rotation_deg=rotation_deg, scale_error=0.01, shear=0.005, deformation_um=deformation_px * sem_ps,
    )  # fmt: skip
    for name, t, shape, ps, render, modality in (
        ("lom", lom_t, lom_shape, lom_ps, render_lom, "LOM"),
        ("sem", sem_t, sem_shape, sem_ps, render_sem, "SEM"),
    ):
        where = t.inverse(_grid_points(shape, ps))
        s = micro.sample(where)
        image = render(s, rng, pixel_size_um=ps)
        inside = (
            (where[..., 0] >= -step_um / 2) & (where[..., 0] < extent[0] + step_um / 2)
            & (where[..., 1] >= -step_um / 2) & (where[..., 1] < extent[1] + step_um / 2)
        )  # fmt: skip
        setattr(spec, name, _micrograph(image, modality, ps, seed))
        setattr(spec, f"{name}_labels", s.constituent.copy())
        setattr(spec, f"{name}_field", inside)
        setattr(spec, f"_{name}_transform", t)
        spec.truth[f"{name}_transform"] = t.to_dict()
        spec.truth[f"{name}_affine_px"] = t.affine_px(step_um, ps)
        spec.truth[f"{name}_deformation_px"] = deformation_px
    spec.truth["ebsd_shape"] = ebsd_shape
