"""Synthetic specimens with known ground truth: the default data of the demo, tests and benchmarks."""

from metallo.synth._specimen import SynthSpecimen, make_specimen

__all__ = ["SynthSpecimen", "make_specimen"]
