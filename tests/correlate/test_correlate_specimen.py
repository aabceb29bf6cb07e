"""The correlate adapters on a Specimen: the registration node the report reads, and the EBSD map
resampled into the micrograph frame (orientations by nearest neighbour, never interpolated)."""

from __future__ import annotations

import json

import numpy as np

from metallo import names
from metallo.report import report_sections
from metallo.specimen import Specimen
from metallo.steps import run_step
from metallo.synth import add_synthetic_specimen


def test_register_and_resample_ebsd_into_the_micrograph_frame(tmp_path):
    spec = Specimen.create(tmp_path / "s.h5", specimen_id="s")
    add_synthetic_specimen(spec, 0, ebsd_shape=(60, 60))
    (reg_node,) = run_step(spec, names.STEP_REGISTER, micrograph="lom")
    reg = spec[reg_node]
    quality = json.loads(reg.attrs[names.QUALITY])
    assert quality[names.PASSED] is True and quality["failed"] is False
    if names.RESIDUAL in reg:  # expected error per region, in µm on the fixed field
        assert reg[names.RESIDUAL].dims == ("y", "x") and reg["x"].attrs["units"] == "um"
    (node,) = run_step(spec, names.STEP_RESAMPLE_EBSD, micrograph="lom")
    assert node == names.resampled(names.EBSD_MAP, "lom")
    source, resampled = spec[names.EBSD_MAP], spec[node]
    # Nearest neighbour: every orientation of the resampled map is one measured in the source map.
    measured = {tuple(np.round(e, 6)) for e in source["euler"].values.reshape(-1, 3) if np.isfinite(e).all()}
    got = [tuple(np.round(e, 6)) for e in resampled["euler"].values.reshape(-1, 3) if np.isfinite(e).all()]
    assert got and all(e in measured for e in got)
    record = [r for r in spec.provenance if node in (r.get("outputs") or [])][-1]
    assert record["step"] == names.STEP_RESAMPLE_EBSD and reg_node in record["inputs"]
    titles = [s.title for s in report_sections(spec)]
    assert "Registration — lom" in titles
