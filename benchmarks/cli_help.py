"""CPU time of ``metallo --help`` and every ``metallo COMMAND --help``, against a bare interpreter.

    python benchmarks/cli_help.py [--repeats 3]

Each help runs in a fresh interpreter (as a user types it); the CPU time (user + system) of the
child is read from ``resource.getrusage``, so the numbers hold on a loaded machine where wall
time does not. The baseline is ``python -c pass`` in the same run; the target is < 0.5 s per
help. Results go to benchmarks/results/cli_help.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
COMMANDS = ("", "info", "ebsd", "register", "annotate", "train", "predict", "evaluate",
            "segment-unsupervised", "quantify", "demo", "analyze", "batch")


def child_cpu_s(args: list[str]) -> float:
    """CPU seconds (user + system) of one child process running ``args``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per command; the minimum is kept")
    args = parser.parse_args()
    baseline = min(child_cpu_s([sys.executable, "-c", "pass"]) for _ in range(args.repeats))
    rows = {}
    for command in COMMANDS:
        argv = [sys.executable, "-m", "metallo.cli", *([command] if command else []), "--help"]
        rows[command or "(none)"] = min(child_cpu_s(argv) for _ in range(args.repeats))
    worst = max(rows.values())
    for name, cpu in rows.items():
        print(f"metallo {name:22s} --help  {cpu:.3f} s CPU  ({cpu / baseline:.1f} x a bare interpreter)")
    print(f"bare interpreter: {baseline:.3f} s CPU; slowest help {worst:.3f} s CPU (target < 0.5 s)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "cli_help.json"
    out.write_text(json.dumps({"baseline_cpu_s": baseline, "help_cpu_s": rows, "slowest_cpu_s": worst,
                               "target_s": 0.5, "repeats": args.repeats}, indent=1))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
