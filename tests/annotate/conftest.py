"""Small EBSD maps with known grains and known classes, built without metallo.ebsd."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from metallo.ebsd import ebsd_dataset

PHASES = [
    {"id": 1, "name": "austenite", "symmetry": "m-3m", "lattice": [3.6, 3.6, 3.6, 90, 90, 90]},
    {"id": 2, "name": "ferrite", "symmetry": "m-3m", "lattice": [2.87, 2.87, 2.87, 90, 90, 90]},
]


def block_grains(shape: tuple[int, int] = (40, 60), block: int = 10) -> np.ndarray:
    """Square grains of ``block`` px numbered row by row."""
    yy, xx = np.indices(shape)
    return ((yy // block) * (shape[1] // block) + xx // block).astype(np.int32)


@pytest.fixture
def known_map():
    """A 40 x 60 map at 0.5 µm of 24 square grains; odd grains are 'bainite' (GOS 3°, KAM 1°)."""
    ids = block_grains()
    n = int(ids.max()) + 1
    bainite = (np.arange(n) % 2).astype(bool)
    gos = np.where(bainite, 3.0, 0.4)
    phase_of_grain = np.where(np.arange(n) < n // 2, 1, 2).astype(np.int16)
    rng = np.random.default_rng(0)
    kam = np.where(bainite[ids], 1.0, 0.2) + rng.normal(0, 0.02, ids.shape)
    ci = np.full(ids.shape, 0.9, np.float32)
    ci[5, 5] = 0.05
    ebsd = ebsd_dataset(
        np.zeros(ids.shape + (3,)),
        phase_of_grain[ids],
        step_um=0.5,
        phases=PHASES,
        variables={"ci": ci, "iq": np.where(bainite[ids], 0.3, 0.8)},
        source="known_map",
    )
    n_pixels = np.bincount(ids.ravel())
    table = pd.DataFrame(
        {
            "phase": phase_of_grain,
            "n_pixels": n_pixels,
            "area_um2": n_pixels * 0.25,
            "gos_deg": gos,
        },
        index=pd.RangeIndex(n, name="grain_id"),
    )
    grains = SimpleNamespace(ids=xr.DataArray(ids, dims=("y", "x")), table=table)
    derived = xr.Dataset({"kam": (("y", "x"), kam)})
    truth = bainite[ids].astype(np.uint8)
    return SimpleNamespace(ebsd=ebsd, grains=grains, derived=derived, truth=truth, ids=ids, bainite=bainite)


@pytest.fixture(scope="session")
def synth_specimen():
    """The default synthetic ferrite + lath-bainite specimen (EBSD 200 x 200 at 0.5 µm, LOM)."""
    from metallo.synth import make_specimen

    return make_specimen(0)


@pytest.fixture(scope="session")
def synth_registration(synth_specimen):
    """The registration recovered by metallo.correlate (EBSD IQ -> LOM), not the synth truth."""
    from metallo._xarray import image_dataarray
    from metallo.correlate import register

    ebsd = synth_specimen.ebsd
    iq = image_dataarray(ebsd["iq"].values, pixel_size_um=float(ebsd.attrs["step_um"]), name="iq")
    return register(fixed=synth_specimen.lom, moving=iq)


@pytest.fixture(scope="session")
def demo_specimen(tmp_path_factory):
    """The specimen file `metallo demo` writes (LOM, SEM, EBSD map, truth masks), 120 x 120 EBSD points."""
    from metallo.synth import write_demo_specimen

    return write_demo_specimen(tmp_path_factory.mktemp("demo"), ebsd_shape=(120, 120))


