"""Fuzz and fault run: thousands of corrupted inputs from the real files, plus concurrency and
kill-during-save trials; prints the outcome table and saves it as JSON.

Inputs: the real files of ../shared/data (.ang, .ctf, PNG/TIFF micrographs, a specimen built
from them), recipes and a small U-Net checkpoint, corrupted by a seeded generator
(tests/fuzz/fuzz_cases.py: truncation, bit flips, NUL runs, random bytes, header and value
edits, dropped/duplicated rows, absurd sizes, broken YAML, alias bombs, h5py edits, checkpoint
field edits). Each case runs in a worker process with a 60 s limit.

    python benchmarks/fuzz.py [--cases 1200] [--seed 1] [--trials 100] [--kills 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))

from faults import kill_during_save_trials, two_writer_trials  # noqa: E402
from fuzz_cases import GOOD, OUTCOMES, generate, run_isolated, table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1200, help="corrupted inputs (default 1200)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trials", type=int, default=100, help="two-writer trials (each mode)")
    parser.add_argument("--kills", type=int, default=100, help="kill-during-save trials")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a case is a hang")
    args = parser.parse_args()
    report: dict[str, object] = {"python": platform.python_version(), "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="metallo-fuzz-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        cases = generate(args.cases, args.seed, folder)
        results = run_isolated(cases, folder, timeout_s=args.timeout)
        seconds = time.perf_counter() - start
        print(table(cases, results))
        counts = Counter(o for o, _ in results)
        print(f"{len(cases)} cases in {seconds:.0f} s; good (error/warning/accepted): "
              f"{sum(counts[o] for o in GOOD)}/{len(cases)}")
        failures = [
            {"outcome": o, "case": c.label, "detail": d}
            for c, (o, d) in zip(cases, results, strict=True) if o not in GOOD
        ]
        for f in failures[:40]:
            print(f"  {f['outcome']}: {f['case']}: {f['detail'][:200]}")
        report["fuzz"] = {
            "cases": len(cases), "seconds": round(seconds, 1),
            "outcomes": {o: counts[o] for o in OUTCOMES},
            "by_target": {t: dict(Counter(o for c, (o, _) in zip(cases, results, strict=True) if c.target == t))
                          for t in sorted({c.target for c in cases})},
            "failures": failures,
        }
        faults: dict[str, object] = {}
        if args.trials:
            for locked in (False, True):
                sub = folder / f"writers_{'locked' if locked else 'unlocked'}"
                sub.mkdir()
                t0 = time.perf_counter()
                counts2 = two_writer_trials(sub, args.trials, locked=locked)
                faults[f"two_writers_{'locked' if locked else 'unlocked'}"] = {
                    **counts2, "trials": args.trials, "seconds": round(time.perf_counter() - t0, 1)}
                print(f"two writers ({'Specimen.lock' if locked else 'no lock'}), {args.trials} trials: {counts2}")
        if args.kills:
            sub = folder / "kills"
            sub.mkdir()
            t0 = time.perf_counter()
            kills = kill_during_save_trials(sub, args.kills, seed=args.seed)
            faults["kill_during_save"] = {**kills, "seconds": round(time.perf_counter() - t0, 1)}
            print(f"kill during save, {args.kills} trials: {kills}")
        report["faults"] = faults
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "fuzz.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
