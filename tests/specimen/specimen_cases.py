"""Builders for one node of every kind, with known values, for the specimen tests.

A module of its own (not conftest.py): several test folders have a conftest, and
``from conftest import ...`` would pick whichever was imported first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import xarray as xr

from metallo._xarray import image_dataarray
from metallo.ebsd import ebsd_dataset

FERRITE = {
    "id": 0,
    "name": "ferrite",
    "symmetry": "m-3m",
    "lattice": [2.87, 2.87, 2.87, 90.0, 90.0, 90.0],
}


def micrograph(dtype: str = "uint16", *, channels: int = 0, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    shape = (24, 32, channels) if channels else (24, 32)
    values = (rng.random(shape) * 200).astype(dtype)
    return image_dataarray(
        values,
        pixel_size_um=0.125,
        attrs={
            "modality": "LOM",
            "source": "lom.tif",
            "sha256": hashlib.sha256(values.tobytes()).hexdigest(),
        },
    )


def ebsd_map(seed: int = 0, shape: tuple[int, int] = (12, 16)) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    phase = np.zeros(shape, np.int16)
    phase[0, :3] = -1
    euler = rng.uniform(0, np.pi, (*shape, 3))
    euler[phase < 0] = np.nan
    return ebsd_dataset(
        euler,
        phase,
        step_um=0.5,
        phases=[FERRITE],
        variables={
            "ci": rng.random(shape, dtype=np.float32),
            "iq": rng.random(shape, dtype=np.float32),
            "fit": rng.random(shape, dtype=np.float32),
        },
        source="map1.ang",
    )


def ebsd_derived(ebsd: xr.Dataset) -> xr.Dataset:
    shape = ebsd.sizes["y"], ebsd.sizes["x"]
    grain_id = np.arange(shape[0] * shape[1], dtype=np.int32).reshape(shape) // 7
    kam = np.linspace(0, 5, grain_id.size, dtype=np.float32).reshape(shape)
    kam[0, 0] = np.nan
    return xr.Dataset(
        {
            "grain_id": (("y", "x"), grain_id, {"parameters": json.dumps({"tolerance_deg": 5.0})}),
            "kam": (("y", "x"), kam, {"units": "deg", "parameters": json.dumps({"order": 3})}),
            "boundaries": (("y", "x"), (grain_id % 3).astype(np.uint8), {"parameters": "{}"}),
            "edge": (("y", "x"), grain_id % 2 == 0, {"parameters": "{}"}),
        },
        coords={"y": ebsd.y, "x": ebsd.x},
    )


def registration() -> xr.Dataset:
    matrix = np.array([[1.01, 0.02, 3.5], [-0.02, 0.99, -1.25], [0.0, 0.0, 1.0]])
    landmarks = np.array([[1.0, 2.0], [3.5, 4.25], [7.0, 1.5]])
    return xr.Dataset(
        {
            "matrix": (("row", "col"), matrix),
            "landmarks_fixed_um": (("landmark", "axis"), landmarks, {"units": "um"}),
            "landmarks_moving_um": (("landmark", "axis"), landmarks + 0.5, {"units": "um"}),
        },
        coords={"axis": ["y", "x"]},
        attrs={
            "fixed": "micrographs/lom",
            "moving": "ebsd/map1",
            "transform_type": "affine",
            "quality": json.dumps({"inliers": 41, "tre_px": 0.8}),
        },
    )


def annotation_labels(dtype: str = "uint8") -> xr.DataArray:
    labels = np.zeros((24, 32), dtype=dtype)
    labels[:, 16:] = 1
    labels[0, :] = 255
    return image_dataarray(
        labels,
        pixel_size_um=0.125,
        name="labels",
        attrs={
            "classes": json.dumps(["polygonal_ferrite", "lath_bainite"]),
            "ignore_index": 255,
            "rules": json.dumps({"name": "lath_bainite", "kam_min_deg": 1.0}),
        },
    )


def segmentation() -> xr.Dataset:
    labels = np.zeros((24, 32), dtype=np.int16)
    labels[12:] = 1
    probabilities = np.stack([labels == 0, labels == 1]).astype(np.float32)
    da = image_dataarray(labels, pixel_size_um=0.125, name="labels")
    return xr.Dataset(
        {"labels": da, "probabilities": (("class", "y", "x"), probabilities)},
        attrs={
            "classes": json.dumps(["polygonal_ferrite", "lath_bainite"]),
            "model": "unet",
            "checkpoint_sha256": "0" * 64,
            "config": json.dumps({"tile": 256, "overlap": 32}),
        },
    )


def psd_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ecd_um": [0.5, 1.25, 2.0, 0.75],
            "area_um2": np.array([0.2, 1.2, 3.1, 0.4], dtype=np.float32),
            "n_pixels": np.array([13, 77, 198, 26], dtype=np.int64),
            "touches_edge": [False, True, False, False],
            "constituent": ["cementite", "cementite", "martensite", None],
            "phase": pd.Categorical(["a", "b", "a", "b"], categories=["b", "a"], ordered=True),
        }
    )


#: node -> builder of the data added there, one entry per node kind (and dtype case).
NODE_CASES: dict[str, Callable[[], object]] = {
    "micrographs/lom_uint16": lambda: micrograph("uint16"),
    "micrographs/lom_uint8_rgb": lambda: micrograph("uint8", channels=3),
    "micrographs/sem_float32": lambda: micrograph("float32"),
    "ebsd/map1": ebsd_map,
    "ebsd/map1/derived": lambda: ebsd_derived(ebsd_map()),
    "registration/lom_ebsd": registration,
    "annotations/bainite": annotation_labels,
    "segmentations/unet": segmentation,
    "quantities/psd": psd_table,
}
