"""One specimen through the whole chain, from a recipe.

``run(recipe)`` reads the inputs (micrographs, EBSD map, or a synthetic specimen), cleans the
EBSD map, derives grains/KAM/GOS/GAM, registers the EBSD map onto a micrograph, annotates,
segments, quantifies and writes the QC report. Every step writes its nodes into the Specimen
file with a provenance record whose parameters carry a ``cache_key``: a hash of the step's
parameters and of the keys of the steps it reads from. The file is saved (atomically) after each
step, so an interrupted run resumes where it stopped, and a re-run skips every step whose key is
unchanged.

Examples
--------
>>> from metallo import pipeline
>>> result = pipeline.run({"specimen": {"id": "S1"}, "inputs": {"synthetic": {"seed": 0}},
...                        "steps": {"clean_ebsd": {}}}, base_dir="/tmp/metallo-doc")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from metallo._recipe import Recipe, load_recipe
from metallo._version import __version__
from metallo.errors import ConfigError

__all__ = ["STEPS", "RunResult", "demo_recipe", "qc_status", "run"]

#: The steps in the order they run, with the steps each one reads from.
STEPS: dict[str, tuple[str, ...]] = {
    "inputs": (),
    "clean_ebsd": ("inputs",),
    "ebsd_derive": ("clean_ebsd", "inputs"),
    "parent": ("clean_ebsd", "inputs"),
    "register": ("clean_ebsd", "inputs"),
    "annotate": ("ebsd_derive", "register"),
    "segment": ("inputs", "annotate"),
    "quantify": ("segment", "ebsd_derive"),
}


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
    """

    specimen_id: str
    specimen_path: Path
    report_path: Path | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    qc: dict[str, Any] = field(default_factory=dict)

    @property
    def ran(self) -> list[str]:
        return [s["step"] for s in self.steps if s["status"] == "ran"]

    @property
    def skipped(self) -> list[str]:
        return [s["step"] for s in self.steps if s["status"] == "skipped"]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Context:
    """State shared by the steps of one run."""

    def __init__(self, recipe: Recipe, spec: Any, progress: Callable[[str], None]) -> None:
        self.recipe = recipe
        self.spec = spec
        self.keys: dict[str, str] = {}
        self.say = progress

    # node helpers -------------------------------------------------------------------------
    def micrograph_name(self, params: Mapping[str, Any] | None) -> str:
        names = sorted(n.split("/", 1)[1] for n in self.spec.nodes() if n.startswith("micrographs/"))
        wanted = (params or {}).get("micrograph")
        if wanted is None:
            for preferred in ("lom", "sem"):
                if preferred in names:
                    return preferred
            if not names:
                raise ConfigError(f"{self.recipe.source}: the recipe has no micrograph to work on")
            return names[0]
        if wanted not in names:
            raise ConfigError(
                f"{self.recipe.source}: micrograph {wanted!r} is not among the inputs; known: {', '.join(names) or 'none'}"
            )
        return str(wanted)

    def micrograph(self, name: str) -> xr.DataArray:
        return self.spec[f"micrographs/{name}"]["image"]

    def ebsd_node(self) -> str:
        return "ebsd/clean" if "ebsd/clean" in self.spec else "ebsd/map"

    def has_ebsd(self) -> bool:
        return "ebsd/map" in self.spec

    def add(self, node: str, data: Any, *, step: str, parameters: Mapping[str, Any], inputs: list[str], key: str) -> None:
        self.spec.add(
            node,
            data,
            step=step,
            parameters={**dict(parameters), "cache_key": key},
            inputs=inputs,
            overwrite=node in self.spec,
        )


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


# steps --------------------------------------------------------------------------------------


def _step_inputs(ctx: _Context, params: dict[str, Any], key: str) -> list[str]:
    from metallo import io

    inputs = ctx.recipe.data.get("inputs", {})
    outputs: list[str] = []
    synthetic = inputs.get("synthetic")
    if synthetic is not None:
        from metallo import synth

        kwargs: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in synthetic.items() if k != "seed"}
        outputs += synth.add_synthetic_specimen(
            ctx.spec, int(synthetic.get("seed", 0)), ebsd_name="map", extra_parameters={"cache_key": key}, **kwargs
        )
    for name, mic in inputs.get("micrographs", {}).items():
        image = io.read_image(mic["path"], pixel_size_um=mic.get("pixel_size_um"), modality=mic.get("modality"))
        ctx.add(f"micrographs/{name}", image, step="io.read_image", parameters=mic, inputs=[mic["path"]], key=key)
        outputs.append(f"micrographs/{name}")
    if "ebsd" in inputs:
        ebsd = io.read_ebsd(inputs["ebsd"]["path"])
        ctx.add("ebsd/map", ebsd, step="io.read_ebsd", parameters=inputs["ebsd"], inputs=[inputs["ebsd"]["path"]], key=key)
        outputs.append("ebsd/map")
    return outputs


def _input_key(recipe: Recipe) -> str:
    inputs = recipe.data.get("inputs", {})
    files = [m["path"] for m in inputs.get("micrographs", {}).values()]
    if "ebsd" in inputs:
        files.append(inputs["ebsd"]["path"])
    return _digest({"inputs": inputs, "files": {f: _file_digest(f) for f in files if Path(f).is_file()}})


def _step_clean_ebsd(ctx: _Context, params: dict[str, Any], key: str) -> list[str]:
    from metallo import ebsd

    cleaned = ebsd.clean(ctx.spec["ebsd/map"], **params)
    ctx.add("ebsd/clean", cleaned, step="ebsd.clean", parameters=params, inputs=["ebsd/map"], key=key)
    return ["ebsd/clean"]


def _step_ebsd_derive(ctx: _Context, params: dict[str, Any], key: str) -> list[str]:
    from metallo import ebsd

    source = ctx.ebsd_node()
    derived = ebsd.derive(ctx.spec[source], **params)
    node = f"{source}/derived"
    ctx.add(node, derived, step="ebsd.derive", parameters=params, inputs=[source], key=key)
    return [node]


def _step_parent(ctx: _Context, params: dict[str, Any], key: str) -> list[str]:
    """Parent-austenite reconstruction (metallo.ebsd.reconstruct_parent) of the EBSD map."""
    from metallo import ebsd

    source = ctx.ebsd_node()
    data = ctx.spec[source]
    options = {"tolerance_deg": float(params.get("tolerance_deg", 5.0)), "start": params.get("start", "auto")}
    rec = ebsd.reconstruct_parent(data, params.get("orientation_relationship", "fit"), **options)
    return ebsd.add_parent_to_specimen(ctx.spec, source.split("/")[1], rec, ebsd=data, source_node=source,
                                       overwrite=True, extra_parameters={"cache_key": key})


def _step_register(ctx: _Context, params: dict[str, Any], key: str) -> list[str]:
    from metallo import correlate, ebsd

    name = ctx.micrograph_name(params)
    options = {k: v for k, v in params.items() if k != "micrograph"}
    source = ctx.ebsd_node()
    reg = correlate.register(ctx.micrograph(name), ebsd.map_image(ctx.spec[source]), **options)
    node = f"registration/{name}"
    ds = reg.to_dataset()
    ds.attrs.update(fixed=f"micrographs/{name}", moving=source)
    ctx.add(node, ds, step="correlate.register", parameters=params, inputs=[f"micrographs/{name}", source], key=key)
    return [node]


def _step_annotate(ctx: _Context, params: dict[str, Any], key: str) -> list[str]:
    from metallo import annotate, correlate

    rules = params.get("rules", "lath_bainite")
    source = ctx.ebsd_node()
    derived = f"{source}/derived"
    labels = annotate.from_ebsd(ctx.spec[source], rules=rules, derived=ctx.spec[derived] if derived in ctx.spec else None)
    outputs = ["annotations/ebsd"]
    ctx.add("annotations/ebsd", labels, step="annotate.from_ebsd", parameters={"rules": rules}, inputs=[source], key=key)
    reg_nodes = [n for n in ctx.spec.nodes() if n.startswith("registration/")]
    if reg_nodes:
        name = ctx.micrograph_name(params) if params.get("micrograph") else reg_nodes[0].split("/", 1)[1]
        reg = correlate.Registration.from_dataset(ctx.spec[f"registration/{name}"])
        warped = annotate.to_micrograph(labels, reg, ctx.micrograph(name))
        ctx.add(
            f"annotations/{name}",
            warped,
            step="annotate.to_micrograph",
            parameters={"rules": rules, "micrograph": name},
            inputs=["annotations/ebsd", f"registration/{name}", f"micrographs/{name}"],
            key=key,
        )
        outputs.append(f"annotations/{name}")
    return outputs


def _class_names(ctx: _Context, params: Mapping[str, Any], n_classes: int) -> list[str]:
    if params.get("classes"):
        names = [str(c) for c in params["classes"]]
        if len(names) != n_classes:
            raise ConfigError(
                f"{ctx.recipe.source}: steps.segment.classes has {len(names)} names for {n_classes} classes"
            )
        return names
    return [f"class_{i}" for i in range(n_classes)]


def _step_segment(ctx: _Context, params: dict[str, Any], key: str) -> list[str]:
    from metallo import segment

    name = ctx.micrograph_name(params)
    image = ctx.micrograph(name)
    method = params.get("method", "unsupervised")
    options = dict(params.get("options") or {})
    if method == "unsupervised":
        n_classes = int(params.get("n_classes", 2))
        labels = segment.unsupervised(image, n_classes=n_classes, **options)
        classes = _class_names(ctx, params, n_classes)
        model, checkpoint_sha = "unsupervised", ""
        inputs = [f"micrographs/{name}"]
    elif method == "checkpoint":
        if "checkpoint" not in params:
            raise ConfigError(f"{ctx.recipe.source}: steps.segment.method 'checkpoint' needs steps.segment.checkpoint")
        labels = segment.predict(params["checkpoint"], image, **options)
        classes = json.loads(labels.attrs["classes"]) if "classes" in labels.attrs else _class_names(ctx, params, int(labels.max()) + 1)
        model, checkpoint_sha = str(labels.attrs.get("model", "checkpoint")), _file_digest(params["checkpoint"])
        inputs = [f"micrographs/{name}", params["checkpoint"]]
    else:  # "annotation": the EBSD-informed mask stands in for a model
        node = f"annotations/{name}"
        if node not in ctx.spec:
            raise ConfigError(f"{ctx.recipe.source}: steps.segment.method 'annotation' needs the annotate step on {name!r}")
        ann = ctx.spec[node]
        labels = ann["labels"]
        classes = json.loads(ann.attrs["classes"])
        model, checkpoint_sha = "annotation", ""
        inputs = [node]
    labels = labels.astype(np.uint8) if labels.dtype != np.uint8 else labels
    labels.attrs.update(
        classes=json.dumps(classes),
        model=model,
        checkpoint_sha256=checkpoint_sha,
        config=json.dumps({"method": method, **{k: v for k, v in params.items() if k != "method"}}, default=str),
    )
    out = f"segmentations/{name}"
    ctx.add(out, labels.rename("labels"), step=f"segment.{method}", parameters=params, inputs=inputs, key=key)
    return [out]


def _step_quantify(ctx: _Context, params: dict[str, Any], key: str) -> list[str]:
    import pandas as pd

    from metallo import quantify

    seg_nodes = [n for n in ctx.spec.nodes() if n.startswith("segmentations/")]
    if not seg_nodes:
        raise ConfigError(f"{ctx.recipe.source}: steps.quantify needs a segment step")
    seg_node = seg_nodes[0]
    seg = ctx.spec[seg_node]
    labels = seg["labels"].values
    classes = json.loads(seg["labels"].attrs.get("classes", seg.attrs.get("classes", "[]")))
    ignore = 255
    grid = (int(params.get("fields", (3, 3))[0]), int(params.get("fields", (3, 3))[1]))
    fields = quantify.measurement_fields(labels, grid=grid, ignore_index=ignore)
    per_field = pd.concat(
        [quantify.phase_fractions(f, classes=classes, ignore_index=ignore).assign(field=i) for i, f in enumerate(fields)],
        ignore_index=True,
    )
    overall = quantify.phase_fraction_ci(fields, classes=classes, ignore_index=ignore)
    limits = ctx.recipe.data.get("limits", {})
    outputs = ["quantities/phase_fields", "quantities/phase_fractions"]
    base = {**params, "fields": list(grid), "segmentation": seg_node}
    ctx.add("quantities/phase_fields", per_field, step="quantify.phase_fractions", parameters=base, inputs=[seg_node], key=key)
    ctx.add(
        "quantities/phase_fractions",
        overall,
        step="quantify.phase_fraction_ci",
        parameters={**base, "limits": limits},
        inputs=[seg_node],
        key=key,
    )
    pixel = float(seg["labels"].attrs.get("pixel_size_um", np.nan))
    if not np.isfinite(pixel):
        pixel = float(np.diff(seg.x.values[:2])[0]) if seg.sizes["x"] > 1 else 1.0
    if params.get("particles_class"):
        cls = params["particles_class"]
        if cls not in classes:
            raise ConfigError(f"{ctx.recipe.source}: steps.quantify.particles_class {cls!r} is not a class; known: {', '.join(classes)}")
        mask = labels == classes.index(cls)
        table = quantify.particle_sizes(mask, pixel_size_um=pixel)
        ctx.add("quantities/particles", table, step="quantify.particle_sizes", parameters={**base, "class": cls}, inputs=[seg_node], key=key)
        outputs.append("quantities/particles")
    derived = f"{ctx.ebsd_node()}/derived"
    if params.get("grain_size", True) and derived in ctx.spec:
        grain_ids = ctx.spec[derived]["grain_id"]
        step_um = float(ctx.spec[ctx.ebsd_node()].attrs["step_um"])
        table = _as_table(quantify.grain_size(grain_ids.values, pixel_size_um=step_um))
        ctx.add("quantities/grain_size", table, step="quantify.grain_size", parameters={"source": derived}, inputs=[derived], key=key)
        outputs.append("quantities/grain_size")
    return outputs


def _as_table(result: Any) -> Any:
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        return result
    if isinstance(result, Mapping):
        return pd.DataFrame([dict(result)])
    return pd.DataFrame([vars(result)])


_STEP_FUNCTIONS: dict[str, Callable[[_Context, dict[str, Any], str], list[str]]] = {
    "inputs": _step_inputs,
    "clean_ebsd": _step_clean_ebsd,
    "ebsd_derive": _step_ebsd_derive,
    "parent": _step_parent,
    "register": _step_register,
    "annotate": _step_annotate,
    "segment": _step_segment,
    "quantify": _step_quantify,
}


def qc_status(phase_fractions: Any, limits: Mapping[str, Any]) -> dict[str, Any]:
    """Pass/fail of each limited class: the mean must lie within ``[min, max]``.

    ``ci_inside`` says whether the whole 95% confidence interval lies within the limits too.
    """
    out: dict[str, Any] = {}
    table = phase_fractions.set_index("class") if "class" in phase_fractions else phase_fractions
    for cls, (lo, hi) in limits.items():
        if cls not in table.index:
            out[cls] = {"status": "missing", "min": lo, "max": hi}
            continue
        row = table.loc[cls]
        mean = float(row["mean"])
        ci_lo, ci_hi = float(row["ci_low"]), float(row["ci_high"])
        out[cls] = {
            "status": "pass" if lo <= mean <= hi else "fail",
            "mean": mean,
            "ci_low": ci_lo,
            "ci_high": ci_hi,
            "min": lo,
            "max": hi,
            "ci_inside": bool(lo <= ci_lo and ci_hi <= hi),
        }
    return out


def run(
    recipe: str | Path | Mapping[str, Any] | Recipe,
    *,
    base_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = False,
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
    progress : bool
        Print one line per step (rich).

    Returns
    -------
    RunResult
    """
    from metallo.specimen import Specimen

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, base_dir=base_dir)
    console = None
    if progress:
        from rich.console import Console

        console = Console(stderr=True, highlight=False)

    def say(message: str) -> None:
        if console is not None:
            console.print(f"[{recipe.specimen_id}] {message}", markup=False)

    recipe.output_dir.mkdir(parents=True, exist_ok=True)
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
    ctx = _Context(recipe, spec, say)
    result = RunResult(recipe.specimen_id, path, None)
    for step, upstream in STEPS.items():
        params = {} if step == "inputs" else recipe.step(step)
        if params is None:
            result.steps.append({"step": step, "status": "not requested", "seconds": 0.0})
            continue
        if step in ("clean_ebsd", "ebsd_derive", "parent", "register", "annotate") and not ctx.has_ebsd():
            raise ConfigError(f"{recipe.source}: steps.{step} needs an EBSD map in inputs")
        up = {u: ctx.keys[u] for u in upstream if u in ctx.keys}
        key = _input_key(recipe) if step == "inputs" else _digest({"step": step, "params": params, "up": up, "v": __version__})
        ctx.keys[step] = key
        t0 = time.perf_counter()
        outputs = _expected_outputs(ctx, step)
        if not force and outputs is not None and _done(spec, outputs, key):
            result.steps.append({"step": step, "status": "skipped", "seconds": 0.0})
            say(f"{step}: unchanged, skipped")
            continue
        if console is not None:
            with console.status(f"[{recipe.specimen_id}] {step} ...", spinner="dots"):
                _STEP_FUNCTIONS[step](ctx, dict(params), key)
        else:
            _STEP_FUNCTIONS[step](ctx, dict(params), key)
        spec.save()
        seconds = time.perf_counter() - t0
        result.steps.append({"step": step, "status": "ran", "seconds": round(seconds, 3)})
        say(f"{step}: done in {seconds:.1f} s")
    if "quantities/phase_fractions" in spec:
        result.qc = qc_status(spec.table("quantities/phase_fractions"), recipe.data.get("limits", {}))
    if recipe.data.get("output", {}).get("report", True):
        from metallo import report

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


def _expected_outputs(ctx: _Context, step: str) -> list[str] | None:
    """The nodes a finished step has written, read from provenance (None: never ran)."""
    names: list[str] = []
    prefix = {
        "inputs": ("io.", "synth."),
        "clean_ebsd": ("ebsd.clean",),
        "ebsd_derive": ("ebsd.derive",),
        "parent": ("ebsd.parent.",),
        "register": ("correlate.register",),
        "annotate": ("annotate.",),
        "segment": ("segment.",),
        "quantify": ("quantify.",),
    }[step]
    for record in ctx.spec.provenance:
        if str(record.get("step", "")).startswith(prefix):
            names.extend(n for n in record.get("outputs") or [] if n not in names)
    return names or None


def demo_recipe(out_dir: str | Path = "metallo-demo", *, seed: int = 0) -> Recipe:
    """The recipe of ``metallo demo``: the whole chain on a synthetic ferrite + lath-bainite specimen.

    The unsupervised segmentation runs with CPU-friendly settings (fewer superpixels, channels
    and iterations than the paper) so the demo finishes in about a minute on two cores.
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
            "register": {"micrograph": "lom", "method": "sift+bspline"},
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
