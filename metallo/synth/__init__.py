"""Synthetic specimens with known ground truth: the default data of the demo, tests and benchmarks.

- :func:`make_specimen`: ferrite + lath bainite seen by EBSD, LOM and SEM, with the exact
  EBSD -> micrograph mapping and the constituent under every pixel.
- :func:`make_martensite`: lath martensite transformed from known austenite grains with a
  known orientation relationship (variants, packets, blocks, retained austenite).
- :func:`make_particles`: round particles with known log-normal radii and touching pairs.
- :func:`make_multiphase`: 2-6 phases with distinct grey levels and textures.
- :func:`add_synthetic_specimen` / :func:`write_demo_specimen`: its inputs and truth in a Specimen.
"""

from metallo.synth._demo import add_synthetic_specimen, write_demo_specimen
from metallo.synth._martensite import SynthMartensite, make_martensite
from metallo.synth._multiphase import make_multiphase
from metallo.synth._particles import SynthParticles, make_particles
from metallo.synth._specimen import SynthSpecimen, ebsd_points_um, make_specimen

__all__ = [
    "SynthParticles",
    "add_synthetic_specimen",
    "SynthSpecimen",
    "ebsd_points_um",
    "SynthMartensite",
    "make_martensite",
    "make_multiphase",
    "make_particles",
    "make_specimen",
    "write_demo_specimen",
]
