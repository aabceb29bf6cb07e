"""write_demo_specimen: a Specimen file with the synthetic data and truth (the inputs of ``metallo demo``)."""

from __future__ import annotations

import json

import numpy as np

from metallo.specimen import Specimen
from metallo.synth import make_specimen, write_demo_specimen

NODES = [
    "annotations/truth_lom",
    "annotations/truth_sem",
    "ebsd/synth",
    "micrographs/lom",
    "micrographs/sem",
]


def test_demo_specimen_holds_the_synthetic_data(tmp_path):
    path = write_demo_specimen(tmp_path / "demo", 2, ebsd_shape=(40, 40))
    assert path == tmp_path / "demo" / "synthetic-specimen.h5"
    spec = Specimen.open(path)
    assert spec.nodes() == NODES
    truth = make_specimen(2, ebsd_shape=(40, 40))
    np.testing.assert_array_equal(spec["micrographs/lom"]["image"].values, truth.lom.values)
    np.testing.assert_array_equal(spec["annotations/truth_sem"]["labels"].values, truth.sem_labels)
    np.testing.assert_allclose(spec["ebsd/synth"]["euler"].values, truth.ebsd.euler.values)
    assert spec["micrographs/sem"].attrs["modality"] == "SEM"
    assert spec["micrographs/lom"].attrs["pixel_size_um"] == 0.3


def test_demo_specimen_records_provenance_and_truth_classes(tmp_path):
    path = write_demo_specimen(tmp_path, seed=1, ebsd_shape=(30, 30))
    spec = Specimen.open(path)
    steps = [r for r in spec.provenance if r["step"] == "synth.make_specimen"]
    assert sorted(o for r in steps for o in r["outputs"]) == NODES
    assert all(r["parameters"] == {"seed": 1, "ebsd_shape": [30, 30]} for r in steps)
    truth = spec["annotations/truth_lom"]
    assert json.loads(truth.attrs["classes"]) == ["polygonal_ferrite", "lath_bainite"]
    assert truth["labels"].dtype == np.uint8 and set(np.unique(truth["labels"].values)) <= {0, 1}
    # Writing again replaces the file rather than failing.
    assert write_demo_specimen(tmp_path, seed=1, ebsd_shape=(30, 30)) == path
