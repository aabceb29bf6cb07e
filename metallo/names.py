"""Every Specimen node name and step name, defined once.

The pipeline, every CLI command, the report and the docs build node and step names with this
module; ``data_schemas/specimen_*.json`` mirror the layout. A node is ``<group>/<name>``; an EBSD
map may carry the sub-nodes ``ebsd/<map>/derived`` (grains, KAM, GOS, GAM, boundaries) and
``ebsd/<map>/parent`` (parent-austenite reconstruction). Quantity tables name their source:
``quantities/<group>.<name>.<what>`` (e.g. ``quantities/segmentations.lom.phase_fractions``), so
the same measurement of two label maps never collides.

Step names are ``<package>.<action>``; they appear in provenance records and select the adapter
(Specimen in, nodes + provenance out) that the pipeline and the CLI both run.

Examples
--------
>>> from metallo import names
>>> names.micrograph("lom")
'micrographs/lom'
>>> names.derived(names.cleaned(names.EBSD_MAP))
'ebsd/clean/derived'
>>> names.quantity(names.segmentation("lom"), names.PHASE_FRACTIONS)
'quantities/segmentations.lom.phase_fractions'
"""

from __future__ import annotations

from collections.abc import Iterable

# groups ------------------------------------------------------------------------------------
MICROGRAPHS = "micrographs"
EBSD = "ebsd"
REGISTRATION = "registration"
ANNOTATIONS = "annotations"
SEGMENTATIONS = "segmentations"
QUANTITIES = "quantities"
PROVENANCE = "provenance"
#: The data groups of a Specimen, in layout order.
GROUPS = (MICROGRAPHS, EBSD, REGISTRATION, ANNOTATIONS, SEGMENTATIONS, QUANTITIES)
#: Groups whose nodes are label maps (variable ``labels``).
LABEL_GROUPS = (ANNOTATIONS, SEGMENTATIONS)

#: Sub-nodes of an EBSD map: ``ebsd/<map>/derived`` and ``ebsd/<map>/parent``.
DERIVED = "derived"
PARENT = "parent"
EBSD_SUBNODES = (DERIVED, PARENT)

# variables and attributes the chain agrees on -------------------------------------------------
IMAGE = "image"
LABELS = "labels"
#: Optional per-pixel segmentation uncertainty (0 certain .. 1 uncertain) beside ``labels``.
UNCERTAINTY = "uncertainty"
#: Optional per-cell novelty beside ``labels``: the share of the models to which the cell looks
#: like none of their training images (0 .. 1; NaN where not judged).
NOVELTY = "novelty"
#: Optional per-pixel registration residual (µm) in a registration node.
RESIDUAL = "residual"
#: Parent-austenite grain ids (>= 0; -1 unassigned) in ``ebsd/<map>/parent``.
PARENT_GRAIN_ID = "parent_grain_id"
#: Per-pixel orientation-relationship misfit (degrees) in ``ebsd/<map>/parent``.
OR_MISFIT = "or_misfit_deg"
#: JSON attribute of registration / segmentation / parent nodes: the quality record.
QUALITY = "quality"
#: Key of a quality record holding the explicit pass/fail (bool).
PASSED = "passed"


def _check(name: str) -> str:
    name = str(name)
    if not name or "/" in name:
        from metallo.errors import ConfigError

        raise ConfigError(f"a node name below a group is one word without '/'; got {name!r}")
    return name


def micrograph(name: str) -> str:
    """``micrographs/<name>``: an image (variable ``image``) on µm coordinates."""
    return f"{MICROGRAPHS}/{_check(name)}"


def ebsd(name: str) -> str:
    """``ebsd/<name>``: an EBSD map."""
    return f"{EBSD}/{_check(name)}"


#: The EBSD map as read, and the cleaned map the pipeline and ``metallo ebsd`` derive from.
EBSD_MAP = ebsd("map")
EBSD_CLEAN = ebsd("clean")


def cleaned(ebsd_node: str) -> str:
    """Where the cleaned copy of an EBSD map goes: ``ebsd/map`` -> ``ebsd/clean``, else ``ebsd/<name>_clean``.

    Examples
    --------
    >>> cleaned("ebsd/map"), cleaned("ebsd/area2")
    ('ebsd/clean', 'ebsd/area2_clean')
    """
    return EBSD_CLEAN if ebsd_node == EBSD_MAP else ebsd(f"{leaf(ebsd_node)}_clean")


def derived(ebsd_node: str) -> str:
    """``ebsd/<map>/derived``: grains, KAM, GOS, GAM and boundaries of an EBSD map."""
    return f"{ebsd_node}/{DERIVED}"


def parent(ebsd_node: str) -> str:
    """``ebsd/<map>/parent``: the reconstructed parent-austenite grains of an EBSD map."""
    return f"{ebsd_node}/{PARENT}"


def map_of(sub_node: str) -> str:
    """The EBSD map of a sub-node: ``ebsd/clean/derived`` -> ``ebsd/clean``."""
    return sub_node.rsplit("/", 1)[0]


def resampled(ebsd_node: str, micrograph_name: str) -> str:
    """``ebsd/<map>_on_<micrograph>``: an EBSD map resampled into a micrograph's frame."""
    return ebsd(f"{leaf(ebsd_node)}_on_{_check(micrograph_name)}")


def registration(name: str) -> str:
    """``registration/<name>``: a transform from an EBSD map (moving) onto micrograph ``name`` (fixed)."""
    return f"{REGISTRATION}/{_check(name)}"


def annotation(name: str) -> str:
    """``annotations/<name>``: a label map from rules (on the EBSD grid)."""
    return f"{ANNOTATIONS}/{_check(name)}"


def annotation_on(name: str, micrograph_name: str) -> str:
    """``annotations/<name>_<micrograph>``: annotation ``name`` carried onto a micrograph."""
    return annotation(f"{_check(name)}_{_check(micrograph_name)}")


def segmentation(name: str) -> str:
    """``segmentations/<name>``: a predicted label map (variable ``labels``, optional ``uncertainty``)."""
    return f"{SEGMENTATIONS}/{_check(name)}"


# quantities -----------------------------------------------------------------------------------
PHASE_FRACTIONS = "phase_fractions"  # mean over fields with the E562 confidence interval
PHASE_FIELDS = "phase_fields"  # fraction of each class in each field
PARTICLES = "particles"  # one row per particle
PSD = "psd"  # particle size distribution (binned) with a log-normal fit
GRAIN_SIZE = "grain_size"  # ASTM E112 planimetric + intercept (+ ASTM E2627 mean area on EBSD maps)
GRAIN_SIZE_BY_PHASE = "grain_size_by_phase"  # the same for each phase of a multi-phase EBSD map
TWINS = "twins"  # twin share of an EBSD map's grain boundaries (Sigma3; hcp twin relations)
MISORIENTATIONS = "misorientations"  # misorientation-angle distribution of an EBSD map's grain boundaries
TEXTURE = "texture"  # normal-direction texture fibres of an EBSD map (gamma, theta, basal), beside random
DENUDED = "denuded"  # denuded-zone width along a network interface
LATHS = "laths"  # apparent lath widths
AGREEMENT = "agreement"  # a segmentation against the reference labels (annotation) of the same micrograph

#: Phase fractions of the specimen: E562 mean and CI with one field per micrograph.
PHASES_ACROSS_MAPS = f"{QUANTITIES}/label_maps.phase_fractions_ci"


def quantity(source: str, what: str) -> str:
    """``quantities/<group>.<name>.<what>``: measurement ``what`` of node ``source``.

    Examples
    --------
    >>> quantity("ebsd/clean/parent", GRAIN_SIZE)
    'quantities/ebsd.clean.parent.grain_size'
    """
    return f"{QUANTITIES}/{source.replace('/', '.')}.{_check(what)}"


# node helpers ---------------------------------------------------------------------------------
def leaf(node: str) -> str:
    """The last part of a node name: ``micrographs/lom`` -> ``lom``."""
    return node.rsplit("/", 1)[-1]


def group_of(node: str) -> str:
    """The group of a node name: ``ebsd/clean/derived`` -> ``ebsd``."""
    return node.strip("/").split("/", 1)[0]


def members(nodes: Iterable[str], *groups: str) -> list[str]:
    """The nodes directly below ``groups`` (no sub-nodes), sorted.

    Examples
    --------
    >>> members(["ebsd/map", "ebsd/map/derived", "micrographs/lom"], EBSD)
    ['ebsd/map']
    """
    return sorted(n for n in nodes if n.count("/") == 1 and group_of(n) in groups)


def sub_nodes(nodes: Iterable[str], kind: str) -> list[str]:
    """The EBSD sub-nodes of one kind (``DERIVED`` or ``PARENT``), sorted."""
    return sorted(n for n in nodes if group_of(n) == EBSD and n.count("/") == 2 and leaf(n) == kind)


# steps ----------------------------------------------------------------------------------------
STEP_READ_IMAGE = "io.read_image"
STEP_READ_EBSD = "io.read_ebsd"
STEP_SYNTH = "synth.make_specimen"
STEP_CLEAN = "ebsd.clean"
STEP_DERIVE = "ebsd.derive"
STEP_PARENT = "ebsd.parent"
STEP_REGISTER = "correlate.register"
STEP_RESAMPLE_EBSD = "correlate.resample_ebsd"
STEP_ANNOTATE = "annotate.from_ebsd"
STEP_TO_MICROGRAPH = "annotate.to_micrograph"
STEP_SEGMENT = "segment"
STEP_QUANTIFY = "quantify"
#: Segmentation methods; the step of each is ``segment.<method>``.
SEGMENT_METHODS = ("unsupervised", "checkpoint", "annotation")
#: Measurements; the step of each is ``quantify.<what>``.
QUANTIFY_WHAT = ("phases", "particles", "grains", "denuded", "laths", "texture")


def segment_step(method: str) -> str:
    """``segment.<method>``."""
    return f"{STEP_SEGMENT}.{method}"


def quantify_step(what: str) -> str:
    """``quantify.<what>``."""
    return f"{STEP_QUANTIFY}.{what}"


#: Every step name a provenance record may carry.
STEPS = (
    STEP_READ_IMAGE, STEP_READ_EBSD, STEP_SYNTH, STEP_CLEAN, STEP_DERIVE, STEP_PARENT, STEP_REGISTER,
    STEP_RESAMPLE_EBSD, STEP_ANNOTATE, STEP_TO_MICROGRAPH,
    *(segment_step(m) for m in SEGMENT_METHODS), *(quantify_step(w) for w in (*QUANTIFY_WHAT, "phases_across_maps")),
)
