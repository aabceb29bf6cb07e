"""Step adapter of ``metallo.segment``: segment a Specimen micrograph into ``segmentations/<name>``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from metallo import names
from metallo._step import file_sha256, latest_output, pick_micrograph, write
from metallo.errors import ConfigError

__all__ = ["segment_step"]


def _class_names(classes: Sequence[str] | None, n_classes: int, where: str) -> list[str]:
    if classes:
        out = [str(c) for c in classes]
        if len(out) != n_classes:
            raise ConfigError(f"{where}: classes has {len(out)} names for {n_classes} classes")
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

        labels = unsupervised(image, n_classes=int(n_classes), **options)
        class_names = _class_names(classes, int(n_classes), where)
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
