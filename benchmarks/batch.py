"""Batch throughput: specimens per minute on a LocalCluster with 1 and 2 workers.

    python benchmarks/batch.py [--quick] [--n 8]

Each specimen is a synthetic ferrite + lath-bainite specimen taken through the chain (EBSD
cleanup and derivation, registration onto the LOM, annotation, annotation-as-segmentation,
phase fractions with CI, grain size, QC report). The scaling ratio is throughput(2 workers) /
throughput(1 worker) measured in the same run; results go to benchmarks/results/batch.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import yaml
from dask.distributed import LocalCluster

from metallo.batch import run_batch

RESULTS = Path(__file__).resolve().parent / "results"


def write_recipes(folder: Path, n: int, shape: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        recipe = {
            "specimen": {"id": f"S{i:03d}", "material": "synthetic"},
            "output": {"dir": f"../out/S{i:03d}"},
            "inputs": {"synthetic": {"seed": i, "ebsd_shape": [shape, shape]}},
            "steps": {
                "clean_ebsd": {},
                "ebsd_derive": {},
                "register": {"micrograph": "lom"},
                "annotate": {"rules": "lath_bainite", "micrograph": "lom"},
                "segment": {"micrograph": "lom", "method": "annotation"},
                "quantify": {"fields": [3, 3]},
            },
            "limits": {"lath_bainite": [0.3, 0.45]},
        }
        (folder / f"S{i:03d}.yaml").write_text(yaml.safe_dump(recipe))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 small specimens")
    parser.add_argument("--n", type=int, default=8, help="number of specimens")
    parser.add_argument("--shape", type=int, default=100, help="EBSD points per side")
    args = parser.parse_args()
    n, shape = (4, 64) if args.quick else (args.n, args.shape)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            base = Path(tmp) / f"w{workers}"
            write_recipes(base / "recipes", n, shape)
            # The cluster is started outside the timing: throughput, not start-up, is measured.
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None, silence_logs=logging.ERROR) as cluster:
                t0 = time.perf_counter()
                result = run_batch([base / "recipes"], scheduler=cluster.scheduler_address, out_dir=base / "summary")
                seconds = time.perf_counter() - t0
            assert not result.failed, result.failed
            rows.append({"workers": workers, "specimens": n, "seconds": round(seconds, 2),
                         "specimens_per_minute": round(60 * n / seconds, 2)})
    ratio = rows[1]["specimens_per_minute"] / rows[0]["specimens_per_minute"]
    print(f"{'workers':>8} {'specimens':>10} {'seconds':>9} {'specimens/min':>14}")
    for r in rows:
        print(f"{r['workers']:>8} {r['specimens']:>10} {r['seconds']:>9.1f} {r['specimens_per_minute']:>14.2f}")
    print(f"scaling 2 workers / 1 worker: {ratio:.2f}x (ideal 2.0x on 2 free cores)")
    RESULTS.mkdir(exist_ok=True)
    out = {"benchmark": "batch", "cpu_count": os.cpu_count(), "ebsd_shape": shape, "rows": rows, "scaling_ratio": round(ratio, 3)}
    (RESULTS / "batch.json").write_text(json.dumps(out, indent=2))
    print(f"saved {RESULTS / 'batch.json'}")


if __name__ == "__main__":
    main()
