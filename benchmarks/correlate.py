"""Benchmark: metallo registration vs plain SimpleITK on real EBSD/BSE pairs and a synthetic specimen.

Real pairs (../shared/data, each with hand-picked homologous points; TRE in fixed pixels at
those points):

* Slice381 (correlative_ebsd_bse_coni, 644 x 483 px, 48 points),
* Slice8_TFS (correlative_ebsd_bse_more, 1109 x 535 px, 18 noisy points).

Methods, all run in this process on the CPU:

* ``metallo auto`` - the default (no points given);
* ``metallo landmarks+tps`` - thin-plate spline exactly through the points; its TRE at the points
  is 0 by construction, so the leave-one-out TRE is reported;
* ``SimpleITK moments -> affine -> B-spline (Mattes MI)`` - ``method="affine+bspline",
  deformable="mi"``: plain SimpleITK, the baseline for time and accuracy.

Rows also give what the points support (no registration, best affine through the points).
A synthetic specimen (metallo.synth, known mapping over a dense grid) checks the same methods
against a known answer. Times are CPU seconds (``time.process_time``) and wall seconds, each the
median of ``--repeats`` runs (default 3) taken in turn; the time ratios are against the SimpleITK
baseline on the same pair in the same run. Run it alone on the machine: another process on the
two cores slows SimpleITK's threads and ours unequally.

    python benchmarks/correlate.py [--data ../shared/data] [--skip-synthetic] [--pairs Slice381]

Results go to benchmarks/results/correlate.json (correlate_<pairs>.json for a subset).
``--orientation-only`` registers each pair with the moving image flipped, half- or quarter-turned,
or transposed (an EBSD map's y axis may run either way; its frame may be a quarter turn off)
and writes benchmarks/results/correlate_orientation.json.
``--stability N`` registers each pair N more times with invisible Gaussian noise added (sigma
0.05 grey levels of an 8-bit rendering of each image, i.e. 0.05/255 of its 0.5-99.5 % range: far
below 8-bit quantisation) and reports the spread of
median / p95 TRE and of the failed flag: how much of a result is the evidence and how much the
rounding (benchmarks/results/correlate_stability[_<pairs>].json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
import warnings
from pathlib import Path

import numpy as np

from metallo.correlate import (
    _register,
    load_point_pair,
    pair_variant,
    point_baselines,
    register,
    tre,
    tre_stats,
)
from metallo.correlate._evaluate import residual_calibration, variant_tre

PAIRS = {
    "Slice381": ("correlative_ebsd_bse_coni", "Slice381_bse.tif", "Slice381_ebsd.tif", "Slice381_ctr_pts_bse.txt", "Slice381_ctr_pts_ebsd.txt"),
    "Slice8_TFS": (
        "correlative_ebsd_bse_more", "Slice8_TFS_bse_resized.png", "Slice8_TFS_ebsd.png",
        "Slice8_TFS_ctr_pts_bse_resized.txt", "Slice8_TFS_ctr_pts_ebsd.txt",
    ),
}

#: The SimpleITK baseline the time ratios are taken against.
BASELINE = "SimpleITK moments->affine->B-spline (Mattes MI)"
#: The same baseline on ITK's default thread count (all cores), as a plain SimpleITK script runs;
#: metallo runs ITK on one thread for reproducible results (``_single_threaded_itk``).
BASELINE_THREADED = BASELINE + ", ITK threads: all cores"
METHODS = {
    "metallo auto (default)": dict(method="auto"),
    "metallo landmarks+tps (exact)": dict(method="landmarks+tps"),
    BASELINE_THREADED: dict(method="affine+bspline", deformable="mi", itk_threads="all"),
    BASELINE: dict(method="affine+bspline", deformable="mi"),
}


@contextlib.contextmanager
def _itk_threads(which: str | None):
    """ITK's default thread count inside ``register`` (``"all"``), instead of metallo's one thread."""
    if which != "all":
        yield
        return
    saved = _register._single_threaded_itk
    _register._single_threaded_itk = contextlib.nullcontext
    try:
        yield
    finally:
        _register._single_threaded_itk = saved


def load_pair(data: Path, name: str):
    """One of ``PAIRS`` from the shared data folder."""
    folder, f_img, m_img, f_pts, m_pts = PAIRS[name]
    d = data / folder
    return load_point_pair(d / f_img, d / m_img, d / f_pts, d / m_pts, name=name)


def timed(fixed, moving, **kw):
    threads = kw.pop("itk_threads", None)
    w0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught, _itk_threads(threads):
        warnings.simplefilter("always")
        reg = register(fixed, moving, **kw)
    return reg, time.process_time() - c0, time.perf_counter() - w0, [str(w.message)[:160] for w in caught]


def real_rows(data: Path, names: list[str], repeats: int = 3) -> list[dict]:
    """Each method on each real pair, ``repeats`` times in turn (method after method, so that a
    slow spell of the machine falls on all of them); times are the medians, the TRE is the first
    run's and the row says whether every repeat gave the same points."""
    rows = []
    for name in names:
        pair = load_pair(data, name)
        base = point_baselines(pair.moving_yx, pair.fixed_yx)
        for label in ("none", "affine_in_sample", "tps_loo"):
            rows.append({"pair": name, "method": f"points: {label}", **{f"tre_{k}": v for k, v in base[label].items()}})
        runs: dict[str, list] = {label: [] for label in METHODS}
        for _ in range(max(1, repeats)):
            for label, kw in METHODS.items():
                if kw["method"] == "landmarks+tps":
                    kw = dict(kw, landmarks=(pair.moving_yx, pair.fixed_yx))
                runs[label].append(timed(pair.fixed, pair.moving, **kw))
        pair_rows = []
        for label, kw in METHODS.items():
            reg, _, _, msgs = runs[label][0]
            cpu = float(np.median([r[1] for r in runs[label]]))
            wall = float(np.median([r[2] for r in runs[label]]))
            if kw["method"] == "landmarks+tps":
                err = reg.quality["landmark_loo_px"]
                stats = {"median": err["median"], "p95": err["p95"], "max": err["max"], "n": err["n"], "note": "leave-one-out"}
                same = all(r[0].quality["landmark_loo_px"]["median"] == err["median"] for r in runs[label])
            else:
                first = tre(reg, pair.moving_yx, pair.fixed_yx)
                stats = tre_stats(first)
                same = all(np.array_equal(tre(r[0], pair.moving_yx, pair.fixed_yx), first) for r in runs[label])
            # Does the expected-error map tell the error's level? (TRE / map at the points it covers;
            # not for the exact spline, which passes through those very points.)
            judged = "residual_map_px" in reg.quality and kw["method"] != "landmarks+tps"
            calibration = residual_calibration(reg, pair.moving_yx, pair.fixed_yx) if judged else None
            row = {
                "pair": name, "method": label, "cpu_s": cpu, "wall_s": wall,
                "cpu_s_runs": [r[1] for r in runs[label]], "wall_s_runs": [r[2] for r in runs[label]],
                "repeats_identical": same,
                **{f"tre_{k}": v for k, v in stats.items()},
                "failed": reg.quality.get("failed"), "warnings": msgs,
                **({"residual_map": calibration} if calibration else {}),
            }
            pair_rows.append(row)
            said = f"; residual map {calibration['map_median_px']:.2f} px, TRE/map {calibration['tre_over_map']:.2f}" if calibration else ""
            print(f"  {name}: {label}: TRE median {stats['median']:.2f} px, {cpu:.1f} s CPU (median of {len(runs[label])}){said}", flush=True)
        baseline = next(r for r in pair_rows if r["method"] == BASELINE)
        threaded = next(r for r in pair_rows if r["method"] == BASELINE_THREADED)
        for row in pair_rows:
            row["cpu_ratio_vs_simpleitk"] = row["cpu_s"] / baseline["cpu_s"]
            row["wall_ratio_vs_simpleitk"] = row["wall_s"] / baseline["wall_s"]
            row["wall_ratio_vs_simpleitk_threaded"] = row["wall_s"] / threaded["wall_s"]
        rows.extend(pair_rows)
    return rows


def grid_rows(data: Path, names: list[str]) -> list[dict]:
    """metallo default on every direction x size x dtype variant; TRE in the forward fixed frame."""
    rows = []
    for name in names:
        base = load_pair(data, name)
        for reverse in (False, True):
            for downsample in (1, 2):
                for dtype in ("native", "uint8", "float"):
                    pair = pair_variant(base, reverse=reverse, downsample=downsample, dtype=dtype)
                    reg, cpu, wall, msgs = timed(pair.fixed, pair.moving)
                    stats = variant_tre(reg, pair, reverse=reverse)
                    row = {
                        "pair": name, "reverse": reverse, "downsample": downsample, "dtype": dtype, "cpu_s": cpu, "wall_s": wall,
                        **{f"{k}_{s}": v for k, st in stats.items() for s, v in st.items() if s in ("median", "p95", "max")},
                        "failed": reg.quality.get("failed"), "gate": reg.quality.get("gate"), "warnings": msgs,
                        # The forward direction's first-pass block matches against chance (1: no evidence).
                        "distinct_over_chance": reg.quality.get("control_points", {}).get("pass0_distinct_over_chance"),
                    }
                    rows.append(row)
                    print(
                        f"  {pair.name:28s} median {row['result_median']:6.2f} p95 {row['result_p95']:6.2f} "
                        f"(start {row['start_median']:6.2f} / {row['start_p95']:6.2f}) {cpu:5.1f} s CPU "
                        f"failed={row['failed']} gate={str(row['gate'])[:40]} x chance {row['distinct_over_chance']}",
                        flush=True,
                    )
    return rows


def grid_summary(rows: list[dict]) -> list[dict]:
    """Per pair and size: the issue's robustness checks over the direction x dtype grid."""
    out = []
    for name in dict.fromkeys(r["pair"] for r in rows):
        for downsample in (1, 2):
            sel = [r for r in rows if r["pair"] == name and r["downsample"] == downsample]
            fwd = [r["result_median"] for r in sel if not r["reverse"]]
            rev = [r["result_median"] for r in sel if r["reverse"]]
            out.append({
                "pair": name, "downsample": downsample,
                "p95_never_worse_than_start": all(r["result_p95"] <= r["start_p95"] for r in sel),
                "worst_p95_minus_start": max(r["result_p95"] - r["start_p95"] for r in sel),
                "fwd_rev_median_gap_px": max(abs(f - b) for f, b in zip(fwd, rev, strict=True)),
                "median_range_over_dtypes_px": max(max(fwd) - min(fwd), max(rev) - min(rev)),
            })
    return out


def synthetic_rows() -> list[dict]:
    from metallo.synth import make_specimen

    spec = make_specimen(0)
    iq = spec.ebsd["iq"]
    rows = []
    for label, kw in METHODS.items():
        if kw["method"] == "landmarks+tps" or label == BASELINE_THREADED:
            continue
        reg, cpu, wall, msgs = timed(spec.lom, iq, **kw)
        err = spec.registration_error_px(reg, every=4)
        rows.append({"pair": "synthetic LOM", "method": label, "cpu_s": cpu, "wall_s": wall,
                     **{f"tre_{k}": v for k, v in tre_stats(err).items()}, "failed": reg.quality.get("failed"), "warnings": msgs})
    for row in rows:
        row["cpu_ratio_vs_simpleitk"] = row["cpu_s"] / rows[-1]["cpu_s"]
        row["wall_ratio_vs_simpleitk"] = row["wall_s"] / rows[-1]["wall_s"]
    return rows


def orientation_rows(data: Path, names: list[str]) -> list[dict]:
    """metallo default with the moving image turned or mirrored; TRE at the points moved with it."""
    rows = []
    for name in names:
        base = load_pair(data, name)
        h, w = base.moving.shape[:2]
        y, x = base.moving_yx[:, 0], base.moving_yx[:, 1]
        cases = {
            "as given": (base.moving, base.moving_yx),
            "rows flipped": (base.moving[::-1], np.c_[h - 1 - y, x]),
            "columns flipped": (base.moving[:, ::-1], np.c_[y, w - 1 - x]),
            "turned 180 degrees": (base.moving[::-1, ::-1], np.c_[h - 1 - y, w - 1 - x]),
            # Quarter turns (np.rot90 turns counter-clockwise as displayed) and the transpose.
            "turned 90 degrees counter-clockwise": (np.rot90(base.moving), np.c_[w - 1 - x, y]),
            "turned 90 degrees clockwise": (np.rot90(base.moving, 3), np.c_[x, h - 1 - y]),
            "transposed": (np.swapaxes(base.moving, 0, 1), np.c_[x, y]),
        }
        for label, (moving, moving_yx) in cases.items():
            reg, cpu, wall, msgs = timed(base.fixed, np.ascontiguousarray(moving))
            stats = tre_stats(tre(reg, moving_yx, base.fixed_yx))
            turn = reg.quality.get("start", {}).get("turn", {})
            row = {
                "pair": name, "moving": label, "cpu_s": cpu, "wall_s": wall,
                **{f"tre_{k}": v for k, v in stats.items()},
                "none_median": float(np.median(np.linalg.norm(moving_yx - base.fixed_yx, axis=1))),
                "start": reg.quality.get("initial"), "turn_found": turn.get("name") if turn.get("used") else "as given",
                "turn_uncertain": turn.get("uncertain"), "failed": reg.quality.get("failed"), "warnings": msgs,
                "orientation_settled": (reg.quality.get("orientation_settled") or {}).get("by"),
            }
            rows.append(row)
            print(f"  {name} moving {label}: TRE median {stats['median']:.2f} px (none {row['none_median']:.0f}), "
                  f"found {row['turn_found']}{' (uncertain)' if row['turn_uncertain'] else ''}, failed {row['failed']}"
                  + (f", orientation settled by {row['orientation_settled']}" if row["orientation_settled"] else ""), flush=True)
    return rows


#: Noise of the stability check, as a fraction of each image's 0.5-99.5 % range (0.05 grey levels in 8 bits).
STABILITY_SIGMA = 0.05 / 255


def stability_rows(data: Path, names: list[str], draws: int) -> list[dict]:
    """The default registration of each pair as given and with ``draws`` invisible noise draws."""
    rows = []
    for name in names:
        pair = load_pair(data, name)
        f0, m0 = np.asarray(pair.fixed, np.float64), np.asarray(pair.moving, np.float64)
        for seed in range(draws + 1):
            if seed == 0:
                fixed, moving = pair.fixed, pair.moving
            else:
                rng = np.random.default_rng(seed)
                fixed = f0 + rng.normal(0.0, STABILITY_SIGMA * np.ptp(np.percentile(f0, [0.5, 99.5])), f0.shape)
                moving = m0 + rng.normal(0.0, STABILITY_SIGMA * np.ptp(np.percentile(m0, [0.5, 99.5])), m0.shape)
            reg, cpu, wall, msgs = timed(fixed, moving)
            stats = tre_stats(tre(reg, pair.moving_yx, pair.fixed_yx))
            rows.append({"pair": name, "draw": seed, "noise_sigma_of_range": 0.0 if seed == 0 else STABILITY_SIGMA,
                         "median": stats["median"], "p95": stats["p95"], "max": stats["max"],
                         "failed": bool(reg.quality.get("failed")), "failure_reasons": reg.quality.get("failure_reasons", []),
                         "round_trip_median_px": (reg.quality.get("inverse_consistency_px") or {}).get("median"),
                         "agreed_share": ((reg.quality.get("both_ways") or {}).get("weights") or {}).get("agreed"),
                         # The gate's evidence: each direction's first-pass matches over chance.
                         "distinct_over_chance": (reg.quality.get("both_ways") or {}).get("distinct_over_chance"),
                         "gate": reg.quality.get("gate"), "cpu_s": cpu})
            print(f"  {name} draw {seed}: median {stats['median']:.2f} p95 {stats['p95']:.2f} failed {reg.quality.get('failed')} "
                  f"(round trip {rows[-1]['round_trip_median_px']:.2f} px, directions agree on {rows[-1]['agreed_share']:.0%}; "
                  f"matches x chance {rows[-1]['distinct_over_chance']}, gate {str(rows[-1]['gate'])[:20]})", flush=True)
    return rows


def stability_summary(rows: list[dict]) -> list[dict]:
    out = []
    for name in dict.fromkeys(r["pair"] for r in rows):
        mine = [r for r in rows if r["pair"] == name]
        med, p95 = np.array([r["median"] for r in mine]), np.array([r["p95"] for r in mine])
        out.append({"pair": name, "draws": len(mine), "median_min": float(med.min()), "median_max": float(med.max()),
                    "p95_min": float(p95.min()), "p95_max": float(p95.max()),
                    "failed_count": int(sum(r["failed"] for r in mine)),
                    "round_trip_median_px_max": float(max(r["round_trip_median_px"] for r in mine)),
                    "agreed_share_min": float(min(r["agreed_share"] for r in mine)),
                    "agreed_share_max": float(max(r["agreed_share"] for r in mine))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="shared data folder (default ../shared/data next to the repository)")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-grid", action="store_true", help="skip the direction x size x dtype grid")
    parser.add_argument("--grid-only", action="store_true", help="only the direction x size x dtype grid")
    parser.add_argument("--pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS), help="real pairs to run (none: only --extra-pair)")
    parser.add_argument(
        "--extra-pair", nargs=6, action="append", default=[], metavar=("NAME", "DIR", "FIXED", "MOVING", "FIXED_PTS", "MOVING_PTS"),
        help="a pair kept elsewhere (your own, or a held-out one): its folder, the two images and the two Fiji x-y point "
             "files; it joins --pairs, results go to correlate_<pairs>.json",
    )
    parser.add_argument("--repeats", type=int, default=3, metavar="N",
                        help="time each method on each real pair N times (medians reported; default 3)")
    parser.add_argument("--stability", type=int, default=0, metavar="N",
                        help="only the stability check: each pair as given and with N invisible noise draws")
    parser.add_argument("--orientation-only", action="store_true",
                        help="only the moving image flipped / half-turned (correlate_orientation.json)")
    args = parser.parse_args()
    data = Path(args.data) if args.data else Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    for name, folder, *files in args.extra_pair:
        # An absolute folder replaces the data folder when joined to it.
        PAIRS[name] = (str(Path(folder).resolve()), *files)
        args.pairs.append(name)
    if args.stability:
        rows = stability_rows(data, args.pairs, args.stability)
        summary = stability_summary(rows)
        for srow in summary:
            print(f"{srow['pair']}: median {srow['median_min']:.2f}-{srow['median_max']:.2f} px, p95 "
                  f"{srow['p95_min']:.2f}-{srow['p95_max']:.2f} px, failed in {srow['failed_count']} of {srow['draws']}; "
                  f"round trip up to {srow['round_trip_median_px_max']:.2f} px, directions agree on "
                  f"{srow['agreed_share_min']:.0%}-{srow['agreed_share_max']:.0%}")
        # Like the other outputs: a subset of pairs (or an extra pair) does not overwrite the full run.
        tag = "" if set(args.pairs) == set(PAIRS) and not args.extra_pair else "_" + "_".join(args.pairs)
        out = Path(__file__).resolve().parent / "results" / f"correlate_stability{tag}.json"
        out.write_text(json.dumps({"noise_sigma_of_range": STABILITY_SIGMA, "rows": rows, "summary": summary}, indent=2, default=float))
        print(f"saved {out}")
        return
    if args.orientation_only:
        rows = orientation_rows(data, args.pairs)
        out = Path(__file__).resolve().parent / "results" / "correlate_orientation.json"
        out.write_text(json.dumps({"rows": rows}, indent=2, default=float))
        print(f"saved {out}")
        return
    rows = [] if args.grid_only else real_rows(data, args.pairs, args.repeats)
    if not args.skip_synthetic and not args.grid_only:
        rows += synthetic_rows()
    grid = [] if args.skip_grid else grid_rows(data, args.pairs)
    print(f"{'pair':14s} {'method':50s} {'TRE med':>8s} {'p95':>7s} {'max':>7s} {'CPU s':>7s} {'x SITK':>7s} {'wall s':>7s} {'x SITK':>7s} {'x SITKmt':>8s} failed")
    for r in rows:
        cpu = (
            f"{r['cpu_s']:7.1f} {r['cpu_ratio_vs_simpleitk']:7.2f} {r['wall_s']:7.1f} {r['wall_ratio_vs_simpleitk']:7.2f} "
            f"{r.get('wall_ratio_vs_simpleitk_threaded', float('nan')):8.2f}"
            if "cpu_s" in r else f"{'':7s} {'':7s} {'':7s} {'':7s} {'':8s}"
        )
        print(f"{r['pair']:14s} {r['method'][:50]:50s} {r['tre_median']:8.2f} {r['tre_p95']:7.2f} {r['tre_max']:7.2f} {cpu} {r.get('failed', '')}")
    summary = grid_summary(grid) if grid else []
    if grid:
        print(f"{'variant':34s} {'median':>7s} {'p95':>7s} {'start med':>9s} {'start p95':>9s} {'CPU s':>6s} failed")
        for r in grid:
            tag = f"{r['pair']} {'rev' if r['reverse'] else 'fwd'} /{r['downsample']} {r['dtype']}"
            print(f"{tag:34s} {r['result_median']:7.2f} {r['result_p95']:7.2f} {r['start_median']:9.2f} {r['start_p95']:9.2f} "
                  f"{r['cpu_s']:6.1f} {r['failed']}")
        for s in summary:
            print(f"{s['pair']} /{s['downsample']}: p95 never worse than start: {s['p95_never_worse_than_start']} "
                  f"(worst {s['worst_p95_minus_start']:+.2f} px); fwd/rev median gap {s['fwd_rev_median_gap_px']:.2f} px; "
                  f"dtype spread {s['median_range_over_dtypes_px']:.2f} px")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    name = "correlate" if set(args.pairs) == set(PAIRS) and not args.extra_pair else f"correlate_{'_'.join(args.pairs)}"
    name += "_grid" if args.grid_only else ""
    payload = {"rows": rows, "grid": grid, "grid_summary": summary}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=float))


if __name__ == "__main__":
    main()
