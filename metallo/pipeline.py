"""One specimen through the whole chain, from a recipe.

``run(recipe)`` reads the inputs (micrographs, EBSD map, or a synthetic specimen), cleans the
EBSD map, derives grains/KAM/GOS/GAM, registers the EBSD map onto a micrograph, annotates,
segments, quantifies and writes the QC report. The run is a loop over the step adapters of
:mod:`metallo.steps` (``RECIPE_STEPS``: recipe step -> adapter), the same adapters the CLI
commands call, so nodes are named (:mod:`metallo.names`) the same either way. Every step writes
its nodes into the Specimen file with a provenance record whose parameters carry a ``cache_key``: a hash of the step's
parameters and of the keys of the steps it reads from. The file is saved (atomically) after each
step, so an interrupted run resumes where it stopped, and a re-run skips every step whose key is
unchanged.

Examples
--------
>>> from metallo import pipeline
>>> result = pipeline.run({"specimen": {"id": "S1"}, "inputs": {"synthetic": {"seed": 0, "ebsd_shape": [40, 40]}},
...                        "steps": {"clean_ebsd": {}}, "output": {"report": False}}, base_dir=".")
>>> result.specimen_path.name, [s["step"] for s in result.steps if s["status"] == "ran"]
('S1.h5', ['inputs', 'clean_ebsd'])
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metallo import names
from metallo._progress import ProgressCallback, notify
from metallo._recipe import Recipe, load_recipe
from metallo._step import file_sha256
from metallo._version import __version__
from metallo.errors import ConfigError
from metallo.steps import run_step

__all__ = ["RECIPE_STEPS", "STEPS", "RunResult", "demo_recipe", "run"]

#: The recipe's steps in the order they run, with the steps each one reads from.
STEPS: dict[str, tuple[str, ...]] = {
    "inputs": (),
    "clean_ebsd": ("inputs",),
    "ebsd_derive": ("clean_ebsd", "inputs"),
    "parent": ("clean_ebsd", "inputs"),
    "register": ("clean_ebsd", "inputs"),
    "annotate": ("ebsd_derive", "register"),
    "segment": ("inputs", "annotate"),
    "quantify": ("segment", "ebsd_derive", "parent"),
}

#: Recipe step -> the adapter it runs (:mod:`metallo.steps`); "inputs" reads files or synthesises.
RECIPE_STEPS: dict[str, str] = {
    "clean_ebsd": names.STEP_CLEAN,
    "ebsd_derive": names.STEP_DERIVE,
    "parent": names.STEP_PARENT,
    "register": names.STEP_REGISTER,
    "annotate": names.STEP_ANNOTATE,
    "segment": names.STEP_SEGMENT,
    "quantify": names.STEP_QUANTIFY,
}
_NEEDS_EBSD = ("clean_ebsd", "ebsd_derive", "parent", "register", "annotate")


@dataclass
class RunResult:
    """What :func:`run` did.

    Attributes
    ----------
    specimen_id : str
    specimen_path : Path
        The Specimen HDF5 file.
    report_path : Path or None
        The QC report (HTML), if the recipe asks for one.
    steps : list of dict
        ``{"step", "status" ("ran" | "skipped" | "not requested"), "seconds"}`` per step.
    qc : dict
        Per-class phase fraction and pass/fail against the recipe's limits.
    checks : dict
        The explicit verdict of every node whose quality record has one
        (:func:`metallo.report.quality_checks`): ``{node: {"passed", "reasons"}}``.
    qc_rests_on_failed : list of str
        Failed nodes the QC'd phase fractions rest on (:func:`metallo.report.failed_upstream`):
        when not empty the QC is no pass, whatever the limits say.
    qc_source : str or None
        What QC judged: a label map, or ``names.PHASES_ACROSS_MAPS`` (the mean over the specimen's
        micrographs, :func:`metallo.report.measured_fractions`).
    """

    specimen_id: str
    specimen_path: Path
    report_path: Path | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    qc: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    qc_rests_on_failed: list[str] = field(default_factory=list)
    qc_source: str | None = None

    @property
    def failed_checks(self) -> list[str]:
        """Nodes whose quality record says failed."""
        return [node for node, c in self.checks.items() if not c["passed"]]

    @property
    def qc_passed(self) -> bool | None:
        """Every class within its limits and nothing failed under the fractions; None without QC limits."""
        from metallo.report import qc_passed

        return qc_passed(self.qc, self.qc_rests_on_failed)

    @property
    def passed(self) -> bool:
        """No node failed its quality check and the QC, where the recipe sets limits, passed."""
        return not self.failed_checks and self.qc_passed is not False

    @property
    def ran(self) -> list[str]:
        return [s["step"] for s in self.steps if s["status"] == "ran"]

    @property
    def skipped(self) -> list[str]:
        return [s["step"] for s in self.steps if s["status"] == "skipped"]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_inputs(recipe: Recipe, spec: Any, tag: Mapping[str, Any]) -> list[str]:
    """The recipe's ``inputs``: a synthetic specimen, micrographs and an EBSD map, through the io adapters."""
    inputs = recipe.data.get("inputs", {})
    outputs: list[str] = []
    synthetic = inputs.get("synthetic")
    if synthetic is not None:
        from metallo import synth

        kwargs: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in synthetic.items() if k != "seed"}
        outputs += synth.add_synthetic_specimen(spec, int(synthetic.get("seed", 0)), ebsd_name=names.leaf(names.EBSD_MAP),
                                                extra_parameters=dict(tag), **kwargs)
    for name, mic in inputs.get("micrographs", {}).items():
        outputs += run_step(spec, names.STEP_READ_IMAGE, name=name, overwrite=True, tag=tag, **mic)
    if "ebsd" in inputs:
        outputs += run_step(spec, names.STEP_READ_EBSD, name=names.leaf(names.EBSD_MAP), overwrite=True, tag=tag,
                            **inputs["ebsd"])
    return outputs


def _input_key(recipe: Recipe) -> str:
    inputs = recipe.data.get("inputs", {})
    files = [m["path"] for m in inputs.get("micrographs", {}).values()]
    if "ebsd" in inputs:
        files.append(inputs["ebsd"]["path"])
    return _digest({"inputs": inputs, "files": {f: file_sha256(f) for f in files if Path(f).is_file()}})


def _adapter_parameters(step: str, params: dict[str, Any], spec: Any) -> dict[str, Any]:
    """A recipe step's parameters as its adapter takes them."""
    params = dict(params)
    if step == "annotate" and not params.get("micrograph"):
        registered = names.members(spec.nodes(), names.REGISTRATION)
        if registered:  # carry the labels onto the micrograph the register step used
            params["micrograph"] = names.leaf(registered[0])
    if step == "quantify":
        what = list(params.pop("what", names.QUANTIFY_WHAT))
        if not params.pop("grain_size", True):
            what = [w for w in what if w != "grains"]
        params["what"] = what
        if "labels" not in params:  # a recipe measures its segmentations (none: the EBSD maps alone)
            params["labels"] = names.members(spec.nodes(), names.SEGMENTATIONS)
    return params


def _step_outputs(spec: Any, key: str) -> list[str]:
    """The nodes written by records carrying ``key``."""
    found: list[str] = []
    for record in spec.provenance:
        params = record.get("parameters") or {}
        if isinstance(params, str):
            params = json.loads(params)
        if params.get("cache_key") == key:
            found.extend(n for n in record.get("outputs") or [] if n not in found)
    return found


def _done(spec: Any, outputs: list[str], key: str) -> bool:
    """True when every output node exists and was last written by a step carrying ``key``.

    Only the latest record of a node counts: a node re-written with other parameters no longer
    holds what an earlier record with the same key described.
    """
    if not outputs or not all(node in spec for node in outputs):
        return False
    last_key: dict[str, Any] = {}
    for record in spec.provenance:
        params = record.get("parameters") or {}
        if isinstance(params, str):
            params = json.loads(params)
        for node in record.get("outputs") or []:
            last_key[node] = params.get("cache_key")
    return all(last_key.get(node) == key for node in outputs)


def _run_one(step: str, recipe: Recipe, spec: Any, params: dict[str, Any], key: str) -> list[str]:
    """Run one recipe step through its adapter (``inputs``: the io adapters / synth)."""
    tag = {"cache_key": key}
    if step == "inputs":
        return _read_inputs(recipe, spec, tag)
    try:
        return run_step(spec, RECIPE_STEPS[step], overwrite=True, tag=tag, **_adapter_parameters(step, params, spec))
    except ConfigError as exc:
        raise ConfigError(f"{recipe.source}: steps.{step}: {exc}") from None


def run(
    recipe: str | Path | Mapping[str, Any] | Recipe,
    *,
    base_dir: str | Path | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Run one specimen through the chain described by ``recipe``.

    Parameters
    ----------
    recipe : path, mapping or Recipe
        A recipe YAML file, a dict, or a loaded :class:`~metallo._recipe.Recipe`.
    base_dir : path, optional
        Folder that relative paths of a dict recipe refer to.
    force : bool
        Re-run every step even if its inputs and parameters are unchanged.
    progress : callable, optional
        ``progress(steps_done, steps, "[specimen] step: ...")`` as each step starts and ends
        (see :mod:`metallo._progress`).

    Returns
    -------
    RunResult
    """
    from metallo.specimen import Specimen

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, base_dir=base_dir)
    recipe.output_dir.mkdir(parents=True, exist_ok=True)
    # Open-modify-save under the specimen's lock: a second run of the same specimen waits.
    with Specimen.lock(recipe.specimen_path):
        return _run_locked(recipe, force=force, progress=progress)


def _run_locked(recipe: Recipe, *, force: bool, progress: ProgressCallback | None) -> RunResult:
    from metallo.specimen import Specimen

    n_steps = len(STEPS) + 1  # and the report

    def say(message: str) -> None:
        notify(progress, len(result.steps), n_steps, f"[{recipe.specimen_id}] {message}")

    path = recipe.specimen_path
    spec_meta = recipe.data["specimen"]
    if path.exists():
        spec = Specimen.open(path)
    else:
        spec = Specimen.create(
            path,
            specimen_id=recipe.specimen_id,
            material=spec_meta.get("material", ""),
            process=spec_meta.get("process", {}),
        )
    result = RunResult(recipe.specimen_id, path, None)
    keys: dict[str, str] = {}
    for step, upstream in STEPS.items():
        params = {} if step == "inputs" else recipe.step(step)
        if params is None:
            result.steps.append({"step": step, "status": "not requested", "seconds": 0.0})
            continue
        if step in _NEEDS_EBSD and not names.members(spec.nodes(), names.EBSD):
            raise ConfigError(f"{recipe.source}: steps.{step} needs an EBSD map in inputs")
        up = {u: keys[u] for u in upstream if u in keys}
        key = _input_key(recipe) if step == "inputs" else _digest({"step": step, "params": params, "up": up, "v": __version__})
        keys[step] = key
        t0 = time.perf_counter()
        if not force and _done(spec, _step_outputs(spec, key), key):
            result.steps.append({"step": step, "status": "skipped", "seconds": 0.0})
            say(f"{step}: unchanged, skipped")
            continue
        say(f"{step} ...")
        _run_one(step, recipe, spec, params, key)
        spec.save()
        seconds = time.perf_counter() - t0
        result.steps.append({"step": step, "status": "ran", "seconds": round(seconds, 3)})
        say(f"{step}: done in {seconds:.1f} s")
    from metallo import report

    verdict = report.qc_verdict(spec, recipe.data.get("limits", {}))
    result.qc, result.checks, result.qc_rests_on_failed = verdict["qc"], verdict["checks"], verdict["qc_rests_on_failed"]
    result.qc_source = verdict["qc_source"]
    if recipe.data.get("output", {}).get("report", True):
        limits = recipe.data.get("limits", {})
        if not force and report.report_is_current(recipe.report_path, spec, limits):
            result.report_path = recipe.report_path
            result.steps.append({"step": "report", "status": "skipped", "seconds": 0.0})
            return result
        t0 = time.perf_counter()
        result.report_path = report.write_report(spec, recipe.report_path, limits=limits)
        result.steps.append({"step": "report", "status": "ran", "seconds": round(time.perf_counter() - t0, 3)})
        say(f"report: {result.report_path}")
    return result


def demo_recipe(out_dir: str | Path = "metallo-demo", *, seed: int = 0) -> Recipe:
    """The recipe of ``metallo demo``: the whole chain on a synthetic ferrite + lath-bainite specimen.

    The unsupervised segmentation runs with CPU-friendly settings (fewer superpixels, channels
    and iterations than Kim et al. 2020) so the demo finishes in about a minute on two cores.
    """
    out_dir = Path(out_dir).resolve()
    data = {
        "specimen": {
            "id": f"demo-{seed}",
            "material": "synthetic complex-phase steel (polygonal ferrite + lath bainite)",
            "process": {"route": "metallo.synth", "heat_treatment": "simulated", "preparation": "simulated",
                        "etchant": "2 % nital (rendered)"},
        },
        "output": {"dir": str(out_dir)},
        "inputs": {"synthetic": {"seed": seed, "ebsd_shape": [150, 150]}},
        "steps": {
            "clean_ebsd": {"min_ci": 0.1, "tolerance_deg": 5.0},
            "ebsd_derive": {"tolerance_deg": 5.0},
            "register": {"micrograph": "lom"},
            "annotate": {"rules": "lath_bainite", "micrograph": "lom"},
            "segment": {
                "micrograph": "lom",
                "method": "unsupervised",
                "n_classes": 2,
                "classes": ["lath_bainite", "polygonal_ferrite"],
                "options": {"n_superpixels": 2000, "channels": 32, "max_iter": 20, "seed": seed},
            },
            "quantify": {"fields": [3, 3], "particles_class": "lath_bainite", "grain_size": True},
        },
        "limits": {"lath_bainite": [0.30, 0.45]},
    }
    return load_recipe(data, base_dir=out_dir)
