"""Synthetic specimens shared by the synth tests (made once per session: they take ~1 s)."""

from __future__ import annotations

import pytest

from metallo.synth import SynthSpecimen, make_specimen


@pytest.fixture(scope="session")
def specimen() -> SynthSpecimen:
    """A small specimen with micrographs: 120 x 120 EBSD points at 0.5 µm."""
    return make_specimen(3, ebsd_shape=(120, 120), step_um=0.5)
