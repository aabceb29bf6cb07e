"""Unsupervised classes of a specimen micrograph named by the reference labels of that micrograph."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr

from metallo import names
from metallo._xarray import image_dataarray
from metallo.segment import segment_step
from metallo.specimen import Specimen

OPTIONS = {"n_superpixels": 64, "channels": 8, "max_iter": 8, "seed": 0}


@pytest.fixture
def spec(tmp_path):
    """A micrograph whose left half is dark (bainite, as the annotation says) and right half bright."""
    rng = np.random.default_rng(0)
    image = np.where(np.arange(64)[None, :] < 32, 60.0, 190.0) + rng.normal(0, 6, (64, 64))
    spec = Specimen.create(tmp_path / "S.h5", specimen_id="S")
    spec.add(names.micrograph("lom"), image_dataarray(np.clip(image, 0, 255).astype(np.uint8), pixel_size_um=0.5,
                                                      name="image", attrs={"modality": "LOM", "source": "test",
                                                                           "sha256": "0" * 64}), step="test")
    reference = np.where(np.arange(64)[None, :] < 32, 1, 0).repeat(64, 0).astype(np.uint8)
    reference[:, 48:] = 255  # the EBSD field does not reach the right edge
    labels = image_dataarray(reference, pixel_size_um=0.5, name=names.LABELS,
                             attrs={"classes": json.dumps(["ferrite", "bainite"]), "ignore_index": 255, "rules": "{}"})
    spec.add(names.annotation("ebsd_on_lom"), xr.Dataset({names.LABELS: labels}, attrs=dict(labels.attrs)),
             step="annotate.to_micrograph", inputs=[names.micrograph("lom")])
    return spec


def _bainite_is_left(spec) -> bool:
    seg = spec[names.segmentation("lom")][names.LABELS]
    bainite = seg.values == json.loads(seg.attrs["classes"]).index("bainite")
    return bainite[:, :28].mean() > 0.95 and bainite[:, 36:].mean() < 0.05


def test_names_given_against_the_reference_are_turned_with_a_warning(spec):
    with pytest.warns(UserWarning, match="named by their overlap with annotations/ebsd_on_lom: bainite, ferrite"):
        segment_step(spec, method="unsupervised", micrograph="lom", classes=["ferrite", "bainite"], options=OPTIONS)
    assert _bainite_is_left(spec)
    naming = json.loads(spec[names.segmentation("lom")][names.LABELS].attrs["naming"])
    assert naming["intensity_order"] == ["ferrite", "bainite"] and naming["names"] == ["bainite", "ferrite"]
    assert naming["agreement_as_named"] > 0.95 > 0.05 > naming["agreement_in_intensity_order"]


def test_names_that_agree_with_the_reference_stay_quietly(spec):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        segment_step(spec, method="unsupervised", micrograph="lom", classes=["bainite", "ferrite"], options=OPTIONS)
    assert not [w for w in caught if "named by their overlap" in str(w.message)]
    assert _bainite_is_left(spec)
    naming = json.loads(spec[names.segmentation("lom")][names.LABELS].attrs["naming"])
    assert naming["names"] == naming["intensity_order"] == ["bainite", "ferrite"]


def test_reference_labels_that_rest_on_a_failed_check_name_nothing(spec, tmp_path):
    ds = spec[names.annotation("ebsd_on_lom")]
    ds.attrs[names.QUALITY] = json.dumps({names.PASSED: False, "failure_reasons": ["registration failed"]})
    spec.add(names.annotation("ebsd_on_lom"), ds, step="annotate.to_micrograph", inputs=[names.micrograph("lom")],
             overwrite=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        segment_step(spec, method="unsupervised", micrograph="lom", classes=["ferrite", "bainite"], options=OPTIONS)
    assert not [w for w in caught if "named by their overlap" in str(w.message)]
    labels = spec[names.segmentation("lom")][names.LABELS]
    assert json.loads(labels.attrs["classes"]) == ["ferrite", "bainite"] and "naming" not in labels.attrs
