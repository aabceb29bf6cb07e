"""A batch of specimens to a QC report: recipes -> Dask batch -> per-specimen reports + summary.

    python examples/qc_report.py [--n 4] [--workers 2] [--out DIR]

Writes one recipe per (synthetic) specimen with phase-fraction limits, runs them with
``metallo.batch.run_batch`` on a local Dask cluster, and prints the summary table. With real
data, write recipes whose ``inputs`` point at micrographs and EBSD maps instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml

from metallo.batch import run_batch


def write_recipes(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        recipe = {
            "specimen": {"id": f"QC{i:02d}", "material": "synthetic CP steel",
                         "process": {"route": "synthetic", "etchant": "nital 2 %"}},
            # Outside the recipes' folder, so absolute (a relative output.dir must stay inside it).
            "output": {"dir": str((folder.parent / "specimens" / f"QC{i:02d}").resolve())},
            "inputs": {"synthetic": {"seed": i, "ebsd_shape": [96, 96], "bainite_fraction": 0.25 + 0.05 * i}},
            "steps": {
                "clean_ebsd": {"min_ci": 0.1},
                "ebsd_derive": {},
                "register": {"micrograph": "lom"},
                "annotate": {"rules": "lath_bainite", "micrograph": "lom"},
                "segment": {"micrograph": "lom", "method": "annotation"},
                "quantify": {"fields": [3, 3], "grain_size": True},
            },
            "limits": {"lath_bainite": [0.30, 0.45]},
        }
        path = folder / f"QC{i:02d}.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4, help="number of specimens")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="qc-report")
    args = parser.parse_args()
    out = Path(args.out)
    write_recipes(out / "recipes", args.n)
    result = run_batch([out / "recipes"], workers=args.workers, out_dir=out,
                       progress=lambda done, total, what: print(f"{what}: {done} of {total}"))
    print(pd.DataFrame(result.rows).drop(columns=["recipe"]).to_string(index=False))
    print(f"summary: {result.summary_html}")


if __name__ == "__main__":
    main()
