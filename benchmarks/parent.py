"""Benchmark: OR fit + parent reconstruction + variants on a 1,000,000-point synthetic martensite map.

The map comes from ``metallo.synth.make_martensite`` (1000 x 1000 points, KS, 2 deg noise,
5 % unindexed; not timed). Timed steps: child grains (``metallo.ebsd.grains``, the peer in
the same run: the ratio is parent-steps time / grains time), OR fit, reconstruction with
variants (wall and process CPU time; the machine may be shared). Accuracy against the exact truth is printed too.
Memory: the peak resident set size (``VmHWM``, reset before the timed chain on Linux) and its
growth over the resident size before the chain; a second run under ``tracemalloc`` gives the
peak traced (Python/NumPy) memory of the chain.

    python benchmarks/parent.py [--quick] [--or KS]

CPU only; the goal (< 60 s for fit + reconstruction + variants) is stated for 2 cores.
Results: benchmarks/results/parent.json (``parent_<OR>.json`` for another OR).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
from pathlib import Path


def _rss_kb(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in kB (Linux), 0 elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current resident size (Linux >= 4.0; a no-op elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def chain(ebsd, timings: dict[str, float], cpu: dict[str, float]):
    import metallo.ebsd as me

    def timed(name, fn):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        timings[name] = time.perf_counter() - t
        cpu[name] = time.process_time() - c
        return out

    g = timed("grains", lambda: me.grains(ebsd, tolerance_deg=5.0, min_size_px=1))
    fit = timed("or_fit", lambda: me.fit_orientation_relationship(ebsd, grains=g))
    rec = timed("reconstruct_and_variants", lambda: me.reconstruct_parent(ebsd, fit, grains=g))
    return fit, rec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 300 x 300 map")
    parser.add_argument("--or", dest="orel", default="KS", help="orientation relationship of the synthetic map")
    args = parser.parse_args()
    from metallo.synth import make_martensite

    side = 300 if args.quick else 1000
    n_parents = 24 if args.quick else 80
    m = make_martensite(0, shape=(side, side), n_parents=n_parents, orientation_relationship=args.orel)
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    load_start = os.getloadavg()[0]
    _reset_peak_rss()
    rss_before = _rss_kb("VmRSS")
    fit, rec = chain(m.ebsd, timings, cpu)
    rss_peak = _rss_kb("VmHWM")
    tracemalloc.start()
    chain(m.ebsd, {}, {})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    parent_time = timings["or_fit"] + timings["reconstruct_and_variants"]
    parent_cpu = cpu["or_fit"] + cpu["reconstruct_and_variants"]
    acc = m.score(rec)
    print(f"{side} x {side} points, OR {args.orel}, {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")
    print(f"{'step':<36}{'wall s':>10}{'CPU s':>10}")
    for k, v in timings.items():
        print(f"{k:<36}{v:>10.2f}{cpu[k]:>10.2f}")
    print(f"{'OR fit + reconstruction + variants':<36}{parent_time:>10.2f}{parent_cpu:>10.2f}  (goal < 60 s)")
    print(f"{'CPU ratio to grains (peer)':<36}{parent_cpu / cpu['grains']:>10.2f}")
    print(f"load average at start / end: {load_start:.1f} / {os.getloadavg()[0]:.1f} "
          "(wall times on a shared machine are inflated)")
    print(f"{'peak RSS during the chain':<32}{rss_peak / 1e6:>10.2f} GB (before: {rss_before / 1e6:.2f} GB)")
    print(f"{'peak traced memory':<32}{peak / 1e9:>10.2f} GB")
    for k, v in acc.items():
        print(f"{k:<32}{v:>10.4g}")
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    out = "parent.json" if args.orel.upper() == "KS" else f"parent_{args.orel}.json"
    (results / out).write_text(json.dumps({
        "points": side * side, "orientation_relationship": args.orel, "timings_s": timings,
        "cpu_s": cpu, "parent_steps_s": parent_time, "parent_steps_cpu_s": parent_cpu,
        "cpu_ratio_to_grains": parent_cpu / cpu["grains"], "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0], "peak_rss_gb": rss_peak / 1e6, "rss_before_gb": rss_before / 1e6,
        "peak_traced_memory_gb": peak / 1e9, "accuracy": acc, "or_fit": fit.to_dict(),
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
