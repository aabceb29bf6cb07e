"""The Specimen container: one HDF5 file per specimen, written through xarray's DataTree.

Layout (see ``docs/specimen.md``)::

    /                          schema_version, metallo_version, specimen_id, material, process
    /micrographs/<name>        image (y, x[, channel]); modality, pixel_size_um, source, sha256
    /ebsd/<name>               the EBSD map of metallo.ebsd.ebsd_dataset; step_um, grid, phases
    /ebsd/<name>/derived       grain_id, kam, gos, ... each with attrs["parameters"]
    /registration/<name>       fixed, moving, transform_type, quality
    /annotations/<name>        labels (y, x) uint8; classes, ignore_index, rules
    /segmentations/<name>      labels (y, x) integer; classes, model, checkpoint_sha256, config
    /quantities/<name>         a table (dim "row"); parameters
    /provenance                records (dim "record"): one JSON string per step

Every node and the root attributes are validated against ``data_schemas/specimen_*.json`` when
a node is added, on save and on open. Saving is atomic. A step adds nodes and never mutates
one in place; each :meth:`Specimen.add` appends a provenance record.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Hashable, Mapping, Sequence
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import xarray as xr

from metallo import names
from metallo._atomic import atomic_write, file_lock
from metallo._specimen_h5 import UnsupportedLayout, read_groups
from metallo._specimen_io import FileStamp, check_hdf5, file_stamp
from metallo._specimen_schema import (
    describe_dataset,
    validate_node,
    validate_provenance,
    validate_root,
    validate_values,
)
from metallo._specimen_table import dataset_to_table, table_to_dataset
from metallo._version import __version__
from metallo.errors import (
    ConfigError,
    ConflictError,
    FormatError,
    MetalloError,
    SchemaError,
    UnknownNameError,
)

__all__ = ["PROVENANCE_FIELDS", "SCHEMA_VERSION", "Specimen", "node_kind"]

#: Version of the container layout written to ``/`` (``schema_version``).
SCHEMA_VERSION = "1.0"
#: The fields of every provenance record.
PROVENANCE_FIELDS = ("step", "parameters", "inputs", "outputs", "metallo_version", "time_utc")

_GROUPS = names.GROUPS
_PROVENANCE = "provenance"
_RECORDS = "records"
_ARRAY_NAME = {"micrographs": "image", "annotations": "labels", "segmentations": "labels"}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_LAYOUT = ", ".join(
    [f"{g}/<name>" for g in _GROUPS[:2]] + [f"{names.EBSD}/<name>/{sub}" for sub in names.EBSD_SUBNODES]
    + [f"{g}/<name>" for g in _GROUPS[2:]]
)
_CHUNK_BYTES = 4 << 20
# Exceptions h5py / h5netcdf / xarray raise for unreadable or malformed files.
# (AttributeError: h5py yields None for a link whose target a flipped byte broke.)
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, IndexError, AttributeError)


def _normalize_node(node: str) -> str:
    if not isinstance(node, str):
        raise ConfigError(
            f"a node name is a string like 'micrographs/lom'; got {type(node).__name__}"
        )
    return node.strip("/")


def node_kind(node: str) -> str:
    """The schema kind of a node path (``"ebsd_derived"`` for ``ebsd/<name>/derived``).

    Parameters
    ----------
    node : str
        A node path such as ``"micrographs/lom"`` (a leading ``/`` is allowed).

    Returns
    -------
    str
        One of ``micrographs, ebsd, ebsd_derived, ebsd_parent, registration, annotations,
        segmentations, quantities``.

    Examples
    --------
    >>> node_kind("/ebsd/map1/derived")
    'ebsd_derived'
    """
    parts = _normalize_node(node).split("/")
    bad = [p for p in parts if not _NAME.match(p)]
    if bad:
        raise ConfigError(
            f"node {node!r}: name part {bad[0]!r} must be letters, digits, '_', '.', '-' (no spaces)"
        )
    if len(parts) == 2 and parts[0] in _GROUPS:
        return parts[0]
    if len(parts) == 3 and parts[0] == names.EBSD and parts[2] in names.EBSD_SUBNODES:
        return f"ebsd_{parts[2]}"
    raise ConfigError(
        f"node {node!r} is not part of the specimen layout; expected one of {_LAYOUT}"
    )


def _now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, PathLike):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be JSON serialisable: {exc}") from None


def _attr_value(value: Any, what: str) -> Any:
    """An attribute value netCDF can store, in the form it is read back."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)  # netCDF has no boolean attributes
    if isinstance(value, str) and "\x00" in value:
        raise ConfigError(f"{what}: strings with NUL characters cannot be stored in HDF5")
    if isinstance(value, (str, int, float, np.number)):
        return value
    if isinstance(value, PathLike):
        return str(value)
    if isinstance(value, Mapping):
        return _dumps(dict(value), what)
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value.tolist() if isinstance(value, np.ndarray) else value)
        if not items:
            return np.array([], dtype=np.float64)
        if all(isinstance(v, str) for v in items):
            return [str(v) for v in items]
        if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in items):
            return np.asarray(items)
        return _dumps(items, what)
    if value is None:
        raise ConfigError(f"{what} is None; netCDF attributes cannot be None (use '' or NaN)")
    raise ConfigError(
        f"{what} has type {type(value).__name__}; expected a string, number, list or dict"
    )


def _storable(var: xr.Variable, what: str) -> None:
    kind = var.dtype.kind
    if kind in "iubSMm" or (kind == "f" and var.dtype.itemsize >= 4):
        return
    if kind in "UO":
        values = var.values.ravel().tolist()
        if all(isinstance(v, str) for v in values):
            if any("\x00" in v for v in values):
                raise ConfigError(f"{what}: strings with NUL characters cannot be stored in HDF5")
            return
    raise ConfigError(
        f"{what} has dtype {var.dtype}; expected bool, (u)int8-64, float32/64, datetime or strings"
    )


class Specimen:
    """One specimen: micrographs, EBSD maps and everything derived from them, in one file.

    Create one with :meth:`create`, re-open it with :meth:`open`; do not call the constructor.

    Examples
    --------
    >>> import numpy as np
    >>> from metallo._xarray import image_dataarray
    >>> lom = image_dataarray(np.zeros((4, 6), np.uint8), pixel_size_um=0.5,
    ...                       attrs={"modality": "LOM", "source": "lom.tif", "sha256": ""})
    >>> spec = Specimen.create("S1.h5", specimen_id="S1", material="CP steel")
    >>> spec.add("micrographs/lom", lom, step="read_image", inputs=["lom.tif"])
    >>> spec.save().name
    'S1.h5'
    >>> Specimen.open("S1.h5")["micrographs/lom"]["image"].shape
    (4, 6)
    """

    def __init__(
        self,
        path: Path,
        attrs: dict[str, Any],
        provenance: list[dict[str, Any]],
        *,
        _stamp: FileStamp | None = None,
        _replace: bool = False,
    ) -> None:
        self._path = path
        self._attrs = attrs
        self._provenance = provenance
        # None = not loaded yet (lazy open); read from the file on first access.
        self._nodes: dict[str, xr.Dataset | None] = {}
        self._descriptions: dict[str, dict[str, Any]] = {}
        # Identity of the file as read or last written: save refuses if it changed since.
        self._stamp = _stamp
        # create(overwrite=True): the first save may replace a file that exists.
        self._replace = _replace

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        path: str | PathLike[str],
        *,
        specimen_id: str,
        material: str = "",
        process: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> Specimen:
        """Start a new, empty specimen; the file is written by :meth:`save`.

        Like :meth:`add`, this changes nothing on disk: a run that fails before its first
        save leaves no empty specimen behind (and, with ``overwrite=True``, the old file
        stays until the new one replaces it atomically).

        Parameters
        ----------
        path : path-like
            The ``.h5`` file to create; its folder must exist.
        specimen_id : str
            The lab's identifier of the specimen.
        material : str
            Steel grade or material name.
        process : dict, optional
            Processing history, e.g. ``{"route": ..., "heat_treatment": ..., "preparation": ...,
            "etchant": ...}``; stored as JSON in ``/`` attr ``process``.
        overwrite : bool
            Allow ``path`` to exist already; it is replaced on :meth:`save`.

        Returns
        -------
        Specimen

        Examples
        --------
        >>> spec = Specimen.create("S1.h5", specimen_id="S1", material="CP steel",
        ...                        process={"etchant": "2% nital"}, overwrite=True)
        >>> spec.nodes()
        []
        """
        path = Path(path).absolute()
        if not isinstance(specimen_id, str) or not specimen_id:
            raise ConfigError(
                f"{path}: specimen_id must be a non-empty string; got {specimen_id!r}"
            )
        if not path.parent.is_dir():
            raise ConfigError(f"{path}: folder {path.parent} does not exist")
        if path.exists() and not overwrite:
            raise ConfigError(
                f"{path} already exists; use Specimen.open() or pass overwrite=True to replace it"
            )
        process = dict(process or {})
        attrs: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "metallo_version": __version__,
            "specimen_id": specimen_id,
            "material": str(material),
            "process": _dumps(process, f"{path}: process"),
        }
        validate_root(attrs, where=str(path))
        spec = cls(path, attrs, [], _replace=overwrite)
        spec._record(
            "create",
            {"specimen_id": specimen_id, "material": str(material), "process": process},
            inputs=(),
            outputs=("/",),
        )
        return spec

    @classmethod
    def open(cls, path: str | PathLike[str], *, lazy: bool = False) -> Specimen:
        """Open and validate a specimen file.

        Parameters
        ----------
        path : path-like
            A file written by :meth:`save`.
        lazy : bool
            ``False`` (default): read every node into memory now, so the specimen stays usable
            whatever happens to the file later. ``True``: read only the layout and attributes
            now and each node on first access; if the file was replaced by another writer in
            the meantime that access raises :class:`FormatError`. Stored values (checksums,
            finite coordinates, Euler-angle ranges, finite CI/IQ at indexed points; see
            :func:`metallo._specimen_schema.validate_values`) are checked when they are read:
            here for an eager open, at first access of each node for a lazy one.

        Returns
        -------
        Specimen

        Raises
        ------
        FormatError
            Missing, truncated, non-HDF5 or foreign HDF5 file, or stored values that fail their
            Fletcher-32 checksum (the message names the node and variable).
        SchemaError
            A node or attribute violates the container schema (the message names both).

        Examples
        --------
        >>> import pandas as pd
        >>> spec = Specimen.create("S1.h5", specimen_id="S1", overwrite=True)
        >>> spec.add("quantities/psd", pd.DataFrame({"ecd_um": [1.0, 2.0]}), step="quantify.particle_sizes")
        >>> _ = spec.save()
        >>> Specimen.open("S1.h5").nodes()
        ['quantities/psd']
        """
        path = Path(path).absolute()
        check_hdf5(path)
        stamp = file_stamp(path)
        attrs, groups = _read_groups(path, lazy=lazy)
        where = str(path)
        validate_root(attrs, where=where)
        if _PROVENANCE not in groups:
            raise SchemaError(f"{where}: node '/provenance' is missing")
        spec = cls(path, attrs, _read_provenance(groups.pop(_PROVENANCE), where), _stamp=stamp)
        for node, ds in groups.items():
            if "/" not in node:
                if node not in _GROUPS or ds.data_vars:
                    raise SchemaError(
                        f"{where}: node '/{node}' is not part of the specimen layout; expected {_LAYOUT}"
                    )
                continue
            try:
                kind = node_kind(node)
            except ConfigError as exc:
                raise SchemaError(f"{where}: {exc}") from None
            description = describe_dataset(ds, node)
            validate_node(description, kind, where=where)
            if not lazy:
                validate_values(ds, node, kind, where=where)
            spec._descriptions[node] = description
            spec._nodes[node] = None if lazy else ds
        return spec

    @staticmethod
    def lock(path: str | PathLike[str], *, timeout: float | None = None) -> Any:
        """Context manager holding the advisory lock of a specimen file (open-modify-save).

        :meth:`save` always takes this lock and refuses to overwrite a file that another
        writer changed since it was opened (:class:`~metallo.errors.ConflictError`). Holding
        the lock from :meth:`open` to :meth:`save` makes concurrent writers wait their turn
        instead. It is re-entrant within a process.

        Parameters
        ----------
        path : path-like
            The specimen file (it need not exist yet).
        timeout : float, optional
            Seconds to wait for another process; default ``METALLO_LOCK_TIMEOUT`` or 120.

        Returns
        -------
        context manager

        Examples
        --------
        >>> with Specimen.lock("S1.h5"):  # doctest: +SKIP
        ...     spec = Specimen.open("S1.h5")
        ...     spec.add("quantities/psd", table, step="quantify.particle_sizes")
        ...     spec.save()
        """
        return file_lock(Path(path), timeout=timeout)

    # ------------------------------------------------------------------ reading
    @property
    def path(self) -> Path:
        """The file this specimen was opened from or last saved to."""
        return self._path

    @property
    def specimen_id(self) -> str:
        """The specimen identifier (root attr ``specimen_id``)."""
        return str(self._attrs["specimen_id"])

    @property
    def material(self) -> str:
        """The material (root attr ``material``)."""
        return str(self._attrs["material"])

    @property
    def process(self) -> dict[str, Any]:
        """The processing history (root attr ``process``, decoded from JSON)."""
        return dict(json.loads(self._attrs["process"]))

    @property
    def attrs(self) -> dict[str, Any]:
        """A copy of the root attributes."""
        return dict(self._attrs)

    @property
    def provenance(self) -> list[dict[str, Any]]:
        """One record per step: step, parameters, inputs, outputs, metallo_version, time_utc."""
        return copy.deepcopy(self._provenance)

    def nodes(self) -> list[str]:
        """The data nodes, sorted, e.g. ``['ebsd/map1', 'ebsd/map1/derived', 'micrographs/lom']``."""
        return sorted(self._nodes)

    def __contains__(self, node: object) -> bool:
        return isinstance(node, str) and node.strip("/") in self._nodes

    def __getitem__(self, node: str) -> xr.Dataset:
        """The Dataset of a node (a shallow copy: the stored node is never mutated)."""
        return self._get(node).copy(deep=False)

    def table(self, node: str) -> pd.DataFrame:
        """A table node (``quantities/...``) as a DataFrame, equal to the one added.

        Parameters
        ----------
        node : str
            A node holding a table (one dim ``row``).

        Returns
        -------
        pandas.DataFrame
            Same columns, dtypes (categoricals, strings, nullable integers) and index.

        Examples
        --------
        >>> import pandas as pd
        >>> spec = Specimen.create("S1.h5", specimen_id="S1", overwrite=True)
        >>> spec.add("quantities/psd", pd.DataFrame({"ecd_um": [1.0, 2.0, 4.0]}), step="quantify.particle_sizes")
        >>> float(spec.table("quantities/psd")["ecd_um"].median())
        2.0
        """
        key = _normalize_node(node)
        return dataset_to_table(self._get(key), node=key)

    def describe(self, node: str) -> dict[str, Any]:
        """Metadata of a node without reading its data (what the node schemas validate).

        Parameters
        ----------
        node : str
            A node name, e.g. ``"ebsd/map1"``.

        Returns
        -------
        dict
            ``{"node", "attrs", "dims", "variables", "coords"}``; each variable as
            ``{"dims", "shape", "dtype", "attrs"}`` with JSON-safe values.

        Examples
        --------
        >>> import pandas as pd
        >>> spec = Specimen.create("S1.h5", specimen_id="S1", overwrite=True)
        >>> spec.add("quantities/psd", pd.DataFrame({"n": [3, 4]}, dtype="uint16"), step="quantify.particle_sizes")
        >>> spec.describe("quantities/psd")["variables"]["n"]["dtype"]
        'uint16'
        """
        key = self._key(node)
        return copy.deepcopy(self._descriptions[key])

    def _key(self, node: str) -> str:
        key = _normalize_node(node)
        if key not in self._nodes:
            raise UnknownNameError(
                f"{self._path}: no node {node!r}; nodes: {', '.join(self.nodes()) or '(none)'}"
            )
        return key

    def _get(self, node: str) -> xr.Dataset:
        key = self._key(node)
        ds = self._nodes[key]
        if ds is None:
            ds = self._read_node(key)
            self._nodes[key] = ds
        return ds

    def _read_node(self, node: str) -> xr.Dataset:
        try:
            now = file_stamp(self._path)
        except FileNotFoundError:
            now = None
        if now != self._stamp:
            raise FormatError(
                f"{self._path}: the file was replaced or removed since it was opened lazily; "
                f"node {node!r} cannot be read from it - open it again"
            )
        ds = _read_groups(self._path, load=[node])[1][node]
        validate_values(ds, node, node_kind(node), where=str(self._path))
        return ds

    # ------------------------------------------------------------------ writing
    def add(
        self,
        node: str,
        data: xr.DataArray | xr.Dataset | pd.DataFrame,
        *,
        step: str,
        parameters: Mapping[str, Any] | None = None,
        inputs: Sequence[str] = (),
        overwrite: bool = False,
    ) -> None:
        """Add a node and append a provenance record (written to disk by :meth:`save`).

        Parameters
        ----------
        node : str
            Where the data goes, e.g. ``"micrographs/lom"``, ``"ebsd/map1"``,
            ``"ebsd/map1/derived"``, ``"registration/lom_ebsd"``, ``"annotations/bainite"``,
            ``"segmentations/unet"``, ``"quantities/psd"``.
        data : DataArray, Dataset or DataFrame
            A DataArray is stored as variable ``image`` (micrographs) or ``labels``
            (annotations, segmentations), its attrs also becoming the node attrs. A DataFrame
            becomes a table with dim ``row``. Dict attrs are stored as JSON text and booleans
            as 0/1 (netCDF has neither).
        step : str
            Name of the step that made the data, e.g. ``"ebsd.derive"``.
        parameters : dict, optional
            The step's parameters (JSON serialisable). They are also the node attr
            ``parameters`` of a quantities table and of derived EBSD variables that lack one.
        inputs : sequence of str
            The nodes or files the step read.
        overwrite : bool
            Replace an existing node (re-running a step); otherwise that raises ConfigError.

        Examples
        --------
        >>> import pandas as pd
        >>> spec = Specimen.create("S1.h5", specimen_id="S1", overwrite=True)
        >>> psd_table = pd.DataFrame({"ecd_um": [0.8, 1.1]})
        >>> spec.add("quantities/psd", psd_table, step="quantify.particle_sizes",
        ...          parameters={"min_area_um2": 0.05}, inputs=["segmentations/unet"])
        >>> spec.provenance[-1]["step"]
        'quantify.particle_sizes'
        """
        key = _normalize_node(node)
        kind = node_kind(key)
        where = str(self._path)
        if not isinstance(step, str) or not step:
            raise ConfigError(
                f"{where}: node {key!r}: step must be a non-empty string; got {step!r}"
            )
        if key in self._nodes and not overwrite:
            raise ConfigError(
                f"{where}: node {key!r} already exists; pass overwrite=True to re-run step {step!r}"
            )
        if kind in ("ebsd_derived", "ebsd_parent") and key.rsplit("/", 1)[0] not in self._nodes:
            raise ConfigError(f"{where}: add the EBSD map {key.rsplit('/', 1)[0]!r} before {key!r}")
        params = dict(parameters or {})
        params_json = _dumps(params, f"{where}: step {step!r} parameters")
        if isinstance(inputs, (str, PathLike)):
            inputs = [inputs]
        ds = _as_dataset(data, key, kind, params_json)
        description = describe_dataset(ds, key)
        validate_node(description, kind, where=where)
        validate_values(ds, key, kind, where=where)
        self._check_aligned(key, ds)
        # A node written again with the very same data and attrs (a micrograph read again) leaves
        # what was made from it current: the record says so, and stale_nodes does not count it.
        unchanged = key in self._nodes and self._same_as_stored(key, ds)
        self._nodes[key] = ds
        self._descriptions[key] = description
        self._record(step, json.loads(params_json), inputs=[str(i) for i in inputs], outputs=(key,), unchanged=unchanged)

    def _same_as_stored(self, key: str, ds: xr.Dataset) -> bool:
        try:
            return bool(self._get(key).identical(ds))
        except Exception:  # an unreadable earlier node is no evidence of sameness
            return False

    def _check_aligned(self, key: str, ds: xr.Dataset) -> None:
        # A derived node inherits its map's coordinates in the DataTree, so both must share the grid.
        parts = key.split("/")
        if parts[0] != "ebsd":
            return
        others = [names.map_of(key)] if len(parts) == 3 else [f"{key}/{sub}" for sub in names.EBSD_SUBNODES]
        for other in others:
            if other not in self._nodes:
                continue
            pair = {other: self._get(other), key: ds}
            try:
                xr.DataTree.from_dict(dict(sorted(pair.items())))
            except ValueError as exc:
                raise ConfigError(
                    f"{self._path}: node {key!r} is not on the grid of {other!r} "
                    f"(a derived or parent node must share its map's y/x): {str(exc).splitlines()[0]}"
                ) from None

    def _record(
        self,
        step: str,
        parameters: dict[str, Any],
        *,
        inputs: Sequence[str],
        outputs: Sequence[str],
        unchanged: bool = False,
    ) -> None:
        self._provenance.append(
            {
                "step": step,
                "parameters": parameters,
                "inputs": list(inputs),
                "outputs": list(outputs),
                "metallo_version": __version__,
                "time_utc": _now_utc(),
                **({"unchanged": True} if unchanged else {}),
            }
        )

    def save(self, path: str | PathLike[str] | None = None) -> Path:
        """Validate and write the whole specimen atomically; returns the path written.

        Parameters
        ----------
        path : path-like, optional
            Write to this file instead (and use it from now on); default: :attr:`path`.

        Returns
        -------
        Path

        Raises
        ------
        ConflictError
            The file changed on disk since this specimen was opened or last saved (another
            writer), or another process held its lock too long; nothing was written.

        Examples
        --------
        >>> spec = Specimen.create("S1.h5", specimen_id="S1", overwrite=True)
        >>> spec.save().name
        'S1.h5'
        """
        target = Path(path).absolute() if path is not None else self._path
        if not target.parent.is_dir():
            raise ConfigError(f"{target}: folder {target.parent} does not exist")
        with file_lock(target):
            if target == self._path:
                self._check_unchanged()
            self._write(target)
        return target

    def _check_unchanged(self) -> None:
        """Refuse to save over a file another writer changed since it was read (lost write)."""
        try:
            now: FileStamp | None = file_stamp(self._path)
        except FileNotFoundError:
            now = None
        if self._stamp is not None and now != self._stamp:
            raise ConflictError(
                f"{self._path}: the file was changed or removed by another writer since this "
                "specimen was opened or last saved; nothing was written - open it again, repeat "
                "the step and save (Specimen.lock(path) serialises open-modify-save)"
            )
        if self._stamp is None and now is not None and not self._replace:
            raise ConflictError(
                f"{self._path}: another writer created this file after Specimen.create; nothing "
                "was written - open it with Specimen.open or create with overwrite=True"
            )

    def _write(self, target: Path) -> None:
        where = str(target)
        for key in self.nodes():
            ds = self._get(key)
            description = describe_dataset(ds, key)
            validate_node(description, node_kind(key), where=where)
            self._descriptions[key] = description
        attrs = {**self._attrs, "metallo_version": __version__}
        validate_root(attrs, where=where)
        validate_provenance(self._provenance, where=where)
        provenance = _provenance_dataset(self._provenance)
        data: dict[str, xr.Dataset] = {"/": xr.Dataset(attrs=attrs)}
        data.update((key, self._get(key)) for key in self.nodes())
        data[_PROVENANCE] = provenance
        tree = xr.DataTree.from_dict(data)
        # No _FillValue: NaN already means unknown, and a fill value costs a masking pass on read.
        # Only a node's own variables: coordinates inherited from its map are written there.
        encoding = {
            "/" + key: {
                str(name): _encoding(var)
                for name, var in _own_variables(tree, key).items()
                if _encoding(var)
            }
            for key in self.nodes()
        }
        atomic_write(
            target,
            lambda temp: tree.to_netcdf(temp, engine="h5netcdf", mode="w", encoding=encoding),
            make_parents=False,
        )
        self._attrs = attrs
        self._path = target
        self._stamp = file_stamp(target)

    def __repr__(self) -> str:
        return f"<Specimen {self.specimen_id!r} at {str(self._path)!r}: {len(self._nodes)} nodes, {len(self._provenance)} steps>"


# ---------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."


def _encoding(var: xr.Variable) -> dict[str, Any]:
    """How a variable is stored: Fletcher-32 checksums on every numeric array (chunked)."""
    encoding: dict[str, Any] = {}
    if var.dtype.kind == "f":
        encoding["_FillValue"] = None
    if var.ndim and var.dtype.kind in "biufMm":
        # Flipped bytes then fail the read (FormatError naming the node) instead of changing
        # values silently. Variable-length strings cannot take HDF5 filters. Filters need
        # chunks: whole rows up to ~4 MB each (h5py's default 32 kB chunks read 2x slower).
        row_bytes = max(1, var.dtype.itemsize * int(np.prod(var.shape[1:], dtype=np.int64)))
        rows = int(min(var.shape[0], max(1, _CHUNK_BYTES // row_bytes)))
        encoding["fletcher32"] = True
        encoding["chunksizes"] = (max(rows, 1), *(max(int(n), 1) for n in var.shape[1:]))
    return encoding


def _own_variables(tree: xr.DataTree, key: str) -> Mapping[Hashable, xr.Variable]:
    node = tree[key]
    assert isinstance(node, xr.DataTree)
    return node.to_dataset(inherit=False).variables


def _check_is_specimen(fh: h5py.File, path: Path) -> None:
    """Tell a foreign HDF5 file from a specimen before reading it as netCDF."""
    missing = [k for k in ("schema_version", "specimen_id") if k not in fh.attrs]
    if missing:
        raise FormatError(
            f"{path}: an HDF5 file but not a metallo specimen (root attr {missing[0]!r} missing; "
            f"top-level groups: {', '.join(sorted(fh.keys())) or 'none'})"
        )


def _read_groups(
    path: Path, *, lazy: bool = False, load: Sequence[str] | None = None
) -> tuple[dict[str, Any], dict[str, xr.Dataset]]:
    """Root attrs and ``{group: Dataset}`` of a specimen file; data read unless ``lazy``.

    The fast h5py reader handles files metallo wrote; anything else goes through
    ``xarray.open_datatree``. Every read error becomes a FormatError naming the file.
    """
    try:
        with h5py.File(path, "r") as fh:
            _check_is_specimen(fh, path)
            try:
                attrs, groups = read_groups(
                    fh, load=load, values=not lazy, always_read=(_PROVENANCE,)
                )
                return attrs, {k: ds.drop_encoding() for k, ds in groups.items()}
            except UnsupportedLayout:
                pass
        with xr.open_datatree(path, engine="h5netcdf", phony_dims="access") as tree:
            groups = {
                sub.path.strip("/"): sub.to_dataset(inherit=True)
                for sub in tree.subtree
                if sub is not tree and (load is None or sub.path.strip("/") in load)
            }
            # Read before the file closes; a lazy open still needs the provenance values.
            groups = {
                k: ds.load().drop_encoding() if not lazy or k == _PROVENANCE else ds
                for k, ds in groups.items()
            }
            return {str(k): v for k, v in tree.attrs.items()}, groups
    except MetalloError:
        raise
    except _READ_ERRORS as exc:
        raise FormatError(
            f"{path}: truncated, corrupt or unreadable specimen file ({_one_line(exc)})"
        ) from None


def _as_dataset(data: Any, key: str, kind: str, params_json: str) -> xr.Dataset:
    if isinstance(data, pd.DataFrame):
        ds = table_to_dataset(data, node=key)
        ds.attrs = dict(data.attrs)
    elif isinstance(data, xr.DataArray):
        name = _ARRAY_NAME.get(kind) or str(data.name or key.rsplit("/", 1)[1])
        ds = data.to_dataset(name=name)
        ds.attrs = dict(data.attrs)
    elif isinstance(data, xr.Dataset):
        ds = data.copy(deep=False)
    else:
        raise ConfigError(
            f"node {key!r}: expected an xr.DataArray, xr.Dataset or pandas DataFrame; got {type(data).__name__}"
        )
    ds = ds.drop_encoding()
    attrs: dict[str, Any] = {
        str(k): _attr_value(v, f"node {key!r} attr {k!r}") for k, v in ds.attrs.items()
    }
    ds.attrs = attrs
    if kind == "quantities":
        ds.attrs.setdefault("parameters", params_json)
    for var_name, var in ds.variables.items():
        what = f"node {key!r} variable {var_name!r}"
        if "/" in str(var_name):
            raise ConfigError(f"{what}: a variable name may not contain '/'")
        _storable(var, what)
        var.attrs = {str(k): _attr_value(v, f"{what} attr {k!r}") for k, v in var.attrs.items()}
        if kind == "ebsd_derived" and var_name in ds.data_vars:
            var.attrs.setdefault("parameters", params_json)
    return ds


def _provenance_dataset(records: list[dict[str, Any]]) -> xr.Dataset:
    text = [_dumps(record, "provenance record") for record in records]
    return xr.Dataset(
        {_RECORDS: ("record", np.array(text, dtype=object))},
        attrs={"description": "one JSON record per step: " + ", ".join(PROVENANCE_FIELDS)},
    )


def _read_provenance(ds: xr.Dataset, where: str) -> list[dict[str, Any]]:
    if _RECORDS not in ds.data_vars:
        raise SchemaError(f"{where}: node '/provenance' field {_RECORDS!r}: missing")
    records = []
    for i, text in enumerate(np.asarray(ds[_RECORDS].values).ravel().tolist()):
        try:
            records.append(json.loads(text))
        except (TypeError, ValueError):
            raise SchemaError(
                f"{where}: node '/provenance' record {i}: not a JSON object: {str(text)[:60]!r}"
            ) from None
    validate_provenance(records, where=where)
    return records
