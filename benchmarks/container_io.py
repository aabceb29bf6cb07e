"""Specimen container I/O speed against raw h5py on the same arrays, in the same run.

Writes and reads a 4096 x 4096 uint16 micrograph plus a 1,000 x 1,000 point EBSD map
(euler float64 (y, x, 3), phase int16, ci/iq/fit float32) once through ``Specimen``
(create + add + atomic save with fsync; open + read every array) and once with plain h5py
(one dataset per array, fsync too; read every dataset back). Reports MB/s and the ratio
Specimen / h5py (goal: >= 0.5). Both paths read right after writing, so both read from the
page cache. ``--quick`` uses 1024 x 1024 and 250,000 points.

    /work/venv/bin/python benchmarks/container_io.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from metallo import __version__
from metallo._xarray import image_dataarray
from metallo.ebsd import ebsd_dataset
from metallo.specimen import Specimen

RESULTS = Path(__file__).resolve().parent / "results"


def make_data(image_side: int, ebsd_side: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 65535, (image_side, image_side), dtype=np.uint16),
        "euler": rng.uniform(0, np.pi, (ebsd_side, ebsd_side, 3)),
        "phase": rng.integers(-1, 2, (ebsd_side, ebsd_side)).astype(np.int16),
        "ci": rng.random((ebsd_side, ebsd_side), dtype=np.float32),
        "iq": rng.random((ebsd_side, ebsd_side), dtype=np.float32),
        "fit": rng.random((ebsd_side, ebsd_side), dtype=np.float32),
    }


def specimen_write(path: Path, arrays: dict[str, np.ndarray]) -> Specimen:
    spec = Specimen.create(path, specimen_id="bench", material="CP steel", overwrite=True)
    lom = image_dataarray(
        arrays["image"],
        pixel_size_um=0.1,
        attrs={"modality": "LOM", "source": "bench", "sha256": ""},
    )
    spec.add("micrographs/lom", lom, step="bench")
    ebsd = ebsd_dataset(
        arrays["euler"],
        arrays["phase"],
        step_um=0.5,
        phases=[
            {"id": 0, "name": "ferrite", "symmetry": "m-3m", "lattice": [2.87] * 3 + [90.0] * 3}
        ],
        variables={k: arrays[k] for k in ("ci", "iq", "fit")},
    )
    spec.add("ebsd/map1", ebsd, step="bench")
    spec.save()
    return spec


def specimen_read(path: Path) -> int:
    spec = Specimen.open(path)
    total = spec["micrographs/lom"]["image"].values.nbytes
    ebsd = spec["ebsd/map1"]
    return total + sum(ebsd[k].values.nbytes for k in ("euler", "phase", "ci", "iq", "fit"))


def h5py_write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with h5py.File(path, "w") as fh:
        for name, values in arrays.items():
            fh.create_dataset(name, data=values)
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def h5py_read(path: Path) -> int:
    with h5py.File(path, "r") as fh:
        return sum(fh[name][()].nbytes for name in fh)


def best_time(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024^2 image, 500^2 EBSD map")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per measurement; the best is kept"
    )
    args = parser.parse_args()
    image_side, ebsd_side = (1024, 500) if args.quick else (4096, 1000)
    arrays = make_data(image_side, ebsd_side)
    mbytes = sum(a.nbytes for a in arrays.values()) / 1e6
    tiny = make_data(16, 8)
    with tempfile.TemporaryDirectory(prefix="metallo-bench-") as tmp:
        folder = Path(tmp)
        spec_path, raw_path = folder / "spec.h5", folder / "raw.h5"
        populated = specimen_write(spec_path, arrays)
        # Save the populated specimen before other writes replace its file (a save refuses to
        # overwrite a file changed since it was opened).
        t = {
            "specimen_save": best_time(populated.save, args.repeat),
            "specimen_write": best_time(lambda: specimen_write(spec_path, arrays), args.repeat),
            "h5py_write": best_time(lambda: h5py_write(raw_path, arrays), args.repeat),
            "specimen_read": best_time(lambda: specimen_read(spec_path), args.repeat),
            "h5py_read": best_time(lambda: h5py_read(raw_path), args.repeat),
        }
        sizes = {
            "specimen_file_mb": spec_path.stat().st_size / 1e6,
            "h5py_file_mb": raw_path.stat().st_size / 1e6,
        }
        # The same layout with a few bytes of data: the per-file cost that no payload amortises.
        fixed = {
            "specimen_write": best_time(lambda: specimen_write(spec_path, tiny), args.repeat),
            "h5py_write": best_time(lambda: h5py_write(raw_path, tiny), args.repeat),
            "specimen_read": best_time(lambda: specimen_read(spec_path), args.repeat),
            "h5py_read": best_time(lambda: h5py_read(raw_path), args.repeat),
        }
    rate = {k: mbytes / v for k, v in t.items()}
    ratio = {
        "write": rate["specimen_write"] / rate["h5py_write"],
        "save": rate["specimen_save"] / rate["h5py_write"],
        "read": rate["specimen_read"] / rate["h5py_read"],
    }
    print(
        f"container I/O: {image_side}x{image_side} uint16 image + {ebsd_side**2:,}-point EBSD map = {mbytes:.1f} MB"
    )
    print(f"{'':34}{'Specimen MB/s':>15}{'h5py MB/s':>12}{'ratio':>8}")
    rows = (
        ("write (create + add + save)", "specimen_write", "h5py_write", "write"),
        ("write (save of a populated spec)", "specimen_save", "h5py_write", "save"),
        ("read (open + every array)", "specimen_read", "h5py_read", "read"),
    )
    for label, ours, raw, key in rows:
        print(f"{label:34}{rate[ours]:15.0f}{rate[raw]:12.0f}{ratio[key]:8.2f}")
    print(
        "fixed cost per file (same layout, tiny arrays): "
        f"write {1e3 * fixed['specimen_write']:.0f} ms vs h5py {1e3 * fixed['h5py_write']:.0f} ms, "
        f"read {1e3 * fixed['specimen_read']:.0f} ms vs h5py {1e3 * fixed['h5py_read']:.0f} ms"
    )
    print(
        "goal: ratio >= 0.5; both writes fsync the file, Specimen also validates and fsyncs the folder"
    )
    print(f"load average while running: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "container_io.json"
    out.write_text(
        json.dumps(
            {
                "metallo_version": __version__,
                "machine": platform.platform(),
                "quick": args.quick,
                "image_shape": [image_side, image_side],
                "ebsd_points": ebsd_side**2,
                "megabytes": mbytes,
                "seconds": t,
                "mb_per_s": rate,
                "ratio_specimen_over_h5py": ratio,
                "fixed_cost_s": fixed,
                "load_average": os.getloadavg()[0],
                **sizes,
            },
            indent=2,
        )
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
