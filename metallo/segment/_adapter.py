"""Step adapter of ``metallo.segment``: segment a Specimen micrograph into ``segmentations/<name>``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from metallo import names
from metallo._step import (
    failed_upstream,
    file_sha256,
    latest_output,
    micrograph_of,
    pick_micrograph,
    write,
)
from metallo.errors import ConfigError

__all__ = ["segment_step"]

#: Fewest reference pixels (labelled in an annotation of the micrograph) to name classes by.
MIN_REFERENCE_PIXELS = 1000


def _class_names(classes: Sequence[str] | None, n_classes: int, where: str) -> list[str]:
    if classes:
        out = [str(c) for c in classes]
        if len(out) != n_classes:
            raise ConfigError(f"{where}: classes has {len(out)} names for {n_classes} classes")
        repeated = sorted({c for c in out if out.count(c) > 1})
        if repeated:
            raise ConfigError(f"{where}: classes names {', '.join(repeated)} more than once; each class needs its own name")
        return out
    return [f"class_{i}" for i in range(n_classes)]


def segment_step(spec: Any, *, method: str = "unsupervised", micrograph: str | None = None, name: str | None = None,
                 n_classes: int = 2, classes: Sequence[str] | None = None, checkpoint: str | None = None,
                 annotation: str | None = None, options: Mapping[str, Any] | None = None, overwrite: bool = False,
                 tag: Mapping[str, Any] | None = None) -> list[str]:
    """Segment a micrograph (step ``segment.<method>``) into ``segmentations/<name>``.

    Parameters
    ----------
    spec : Specimen
    method : {"unsupervised", "checkpoint", "annotation"}
        The unsupervised CNN + superpixels, a trained checkpoint, or the EBSD-informed annotation
        on the micrograph standing in for a model.
    micrograph : str, optional
        Name or node (default ``lom``, ``sem`` or the first).
    name : str, optional
        Node name below ``segmentations/`` (default the micrograph's name).
    n_classes : int
        Classes of the unsupervised method.
    classes : sequence of str, optional
        Class names in label order (unsupervised; default ``class_<i>``).
    checkpoint : str, optional
        The checkpoint file (method "checkpoint").
    annotation : str, optional
        The annotation node (method "annotation"; default the last one carried onto the micrograph).
    options : mapping, optional
        Passed to :func:`metallo.segment.unsupervised` or :func:`metallo.segment.predict`.
    overwrite : bool
    tag : mapping, optional
        Extra provenance parameters.

    Returns
    -------
    list of str

    Examples
    --------
    >>> segment_step(spec, method="annotation", micrograph="lom")  # doctest: +SKIP
    ['segmentations/lom']
    """
    import numpy as np
    import xarray as xr

    where = str(getattr(spec, "path", "specimen"))
    if method not in names.SEGMENT_METHODS:
        raise ConfigError(f"{where}: unknown segmentation method {method!r}; known: {', '.join(names.SEGMENT_METHODS)}")
    fixed = pick_micrograph(spec, micrograph)
    image = spec[fixed][names.IMAGE]
    options = dict(options or {})
    params: dict[str, Any] = {"method": method, "micrograph": names.leaf(fixed), "options": options}
    if method == "unsupervised":
        from metallo.segment._unsupervised import unsupervised

        class_names = _class_names(classes, int(n_classes), where)  # before the minutes of clustering
        labels = unsupervised(image, n_classes=int(n_classes), **options)
        if classes is not None:
            class_names = _name_by_reference(spec, fixed, labels, class_names, where)
        model, checkpoint_sha, inputs = "unsupervised", "", [fixed]
        params.update(n_classes=int(n_classes), classes=class_names)
    elif method == "checkpoint":
        if not checkpoint:
            raise ConfigError(f"{where}: segmentation method 'checkpoint' needs a checkpoint file")
        from metallo.segment._infer import predict

        predicted = predict(checkpoint, image, **options)
        labels = predicted[names.LABELS] if isinstance(predicted, xr.Dataset) else predicted
        class_names = (json.loads(labels.attrs["classes"]) if "classes" in labels.attrs
                       else _class_names(classes, int(labels.max()) + 1, where))
        model, checkpoint_sha, inputs = str(labels.attrs.get("model", "checkpoint")), file_sha256(checkpoint), \
            [fixed, str(checkpoint)]
        params.update(checkpoint=str(checkpoint))
    else:
        node = annotation or latest_output(spec, names.STEP_TO_MICROGRAPH)
        if node is None or node not in spec or spec[node][names.LABELS].shape != image.shape[:2]:
            raise ConfigError(f"{where}: segmentation method 'annotation' needs an annotation carried onto "
                              f"{fixed} (the annotate step with a micrograph)")
        ann = spec[node]
        labels = ann[names.LABELS]
        class_names = json.loads(ann.attrs["classes"])
        model, checkpoint_sha, inputs = "annotation", "", [node]
        params.update(annotation=node)
    if labels.dtype != np.uint8:
        labels = labels.astype(np.uint8)
    labels = labels.rename(names.LABELS)
    labels.attrs.update(classes=json.dumps(class_names), model=model, checkpoint_sha256=checkpoint_sha,
                        config=json.dumps(params, default=str))
    out = names.segmentation(name or names.leaf(fixed))
    return [write(spec, out, labels, step=names.segment_step(method), parameters=params, inputs=inputs,
                  overwrite=overwrite, tag=tag)]


def _name_by_reference(spec: Any, micrograph: str, labels: Any, class_names: list[str], where: str) -> list[str]:
    """Unsupervised classes named by overlap with an annotation of the same micrograph, if any.

    The unsupervised labels are numbered by mean intensity (darkest first) and the recipe's names
    follow that order. Whether lath bainite is the darker class depends on etch and detector, so
    where the specimen holds reference labels of this micrograph (e.g. the EBSD-informed annotation
    the annotate step carried onto it) with the same class names, the names go to the clusters
    that overlap them most (an assignment over the confusion counts); a change is warned about
    and recorded in the quality record (``naming``).
    """
    import warnings

    import numpy as np
    from scipy.optimize import linear_sum_assignment

    lab = np.asarray(labels.values).astype(np.int64)
    k = len(class_names)
    if lab.size == 0 or lab.max() >= k or len(set(class_names)) != k:
        return class_names
    for ann in names.members(spec.nodes(), names.ANNOTATIONS):
        ds = spec[ann]
        ref = ds[names.LABELS]
        if ref.shape != lab.shape or micrograph_of(spec, ann) != micrograph or failed_upstream(spec, ann):
            continue  # (labels warped through a failed registration name nothing)
        raw = ds.attrs.get("classes", ref.attrs.get("classes", "[]"))
        ref_names = [str(c) for c in (json.loads(raw) if isinstance(raw, str) else raw)]
        if not set(class_names) <= set(ref_names):
            continue
        to_ours = np.array([class_names.index(n) if n in class_names else -1 for n in ref_names] + [-1])
        values = np.asarray(ref.values).astype(np.int64)
        values = np.where((values < 0) | (values >= len(ref_names)), len(ref_names), values)
        ref_ours = to_ours[values]
        keep = ref_ours >= 0
        if keep.sum() < MIN_REFERENCE_PIXELS:
            continue
        counts = np.bincount(lab[keep] * k + ref_ours[keep], minlength=k * k).reshape(k, k).astype(np.float64)
        rows, cols = linear_sum_assignment(-counts)
        named = [class_names[cols[i]] for i in np.argsort(rows)]
        given, best = float(np.trace(counts) / counts.sum()), float(counts[rows, cols].sum() / counts.sum())
        record = {"reference": ann, "intensity_order": class_names, "names": named,
                  "agreement_in_intensity_order": given, "agreement_as_named": best}
        if named != class_names:
            warnings.warn(f"{where}: unsupervised classes named by their overlap with {ann}: {', '.join(named)} "
                          f"(darkest first) agree with it on {100 * best:.0f}% of its pixels, the given order "
                          f"({', '.join(class_names)}) on {100 * given:.0f}%", stacklevel=3)
        quality = labels.attrs.get(names.QUALITY)
        if isinstance(quality, str):
            record_all = json.loads(quality)
            record_all["naming"] = record
            labels.attrs[names.QUALITY] = json.dumps(record_all)
        labels.attrs["naming"] = json.dumps(record)
        return named
    return class_names
