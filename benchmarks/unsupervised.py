"""Benchmark of metallo.segment.unsupervised on a 1000 x 1000 synthetic 3-phase micrograph.

Reports, in one run:

1. the superpixel time (SLIC, 50 000 requested, the paper's setting);
2. the refinement step (majority label per superpixel): metallo's one-``bincount`` version
   against the paper's loop over superpixels (Kanezaki's code: precomputed pixel lists, then
   ``np.unique`` + histogram per superpixel), per iteration, same labels, same answer -> ratio;
3. one CNN iteration (forward + CE + backward + SGD step) at the paper's 100 channels;
4. whole runs at settings a CPU user can live with (down-scaled input, fewer channels), with
   their total time split into superpixels / CNN / refinement and their adjusted Rand index
   against the known phases, next to the same run with the loop refinement;
5. on CUDA (when present) the whole run at the paper's settings (target: <= 3 s per image).

Run: ``/work/venv/bin/python benchmarks/unsupervised.py [--quick] [--device cpu|cuda|auto]``.
The table is printed and saved to benchmarks/results/unsupervised.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from skimage.transform import resize

from metallo._device import resolve_device
from metallo.segment._criteria import adjusted_rand_index
from metallo.segment._superpixels import slic_superpixels
from metallo.segment._unsupervised import (
    SuperpixelRefinement,
    _as_float_stack,
    _build_network,
    _relabel_by_intensity,
    _train,
)
from metallo.synth import make_multiphase

RESULTS = Path(__file__).resolve().parent / "results"


class LoopRefinement:
    """The paper's refinement: one Python iteration per superpixel (Kanezaki 2018, main loop)."""

    def __init__(self, superpixels: np.ndarray):
        flat = superpixels.ravel()
        # Kanezaki computes the pixel list of every superpixel once, before training.
        order = np.argsort(flat, kind="stable")
        bounds = np.flatnonzero(np.diff(flat[order])) + 1
        self.l_inds = np.split(order, bounds)

    def __call__(self, labels: torch.Tensor) -> torch.Tensor:
        im_target = labels.cpu().numpy().copy()
        for inds in self.l_inds:
            labels_per_sp = im_target[inds]
            u_labels_per_sp = np.unique(labels_per_sp)
            hist = np.zeros(len(u_labels_per_sp))
            for j in range(len(hist)):
                hist[j] = len(np.where(labels_per_sp == u_labels_per_sp[j])[0])
            im_target[inds] = u_labels_per_sp[np.argmax(hist)]
        return torch.from_numpy(im_target).to(labels.device)


def timed(fn, repeats: int, sync) -> tuple[float, object]:
    result = None
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best, result


def refinement_comparison(image: np.ndarray, device: torch.device, repeats: int) -> dict:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    sp = slic_superpixels(image, n_superpixels=50_000, compactness=20)
    t_sp = time.perf_counter() - start
    n_sp = int(sp.max()) + 1
    # Labels as an untrained network produces them: the argmax of its first forward pass.
    torch.manual_seed(0)
    net = _build_network(1, 100, 2, 50).to(device)
    x = torch.from_numpy(((image - image.mean()) / image.std()).astype(np.float32))[None, None].to(device)
    with torch.no_grad():
        labels = net(x)[0].reshape(50, -1).argmax(0)
    sp_t = torch.from_numpy(sp.ravel()).to(device)
    loop = LoopRefinement(sp)
    vectorised = SuperpixelRefinement(sp_t, n_superpixels=n_sp, n_labels=50)
    t_vec, vec = timed(lambda: vectorised(labels), repeats * 5, sync)
    t_loop, ref = timed(lambda: loop(labels), repeats, sync)
    assert torch.equal(vec.cpu(), ref.cpu()), "vectorised and loop refinement disagree"
    return {"superpixels_s": t_sp, "n_superpixels": n_sp, "refine_vectorised_s": t_vec, "refine_loop_s": t_loop,
            "refine_ratio": t_loop / t_vec}


def cnn_iteration(image: np.ndarray, device: torch.device, channels: int, repeats: int) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    net = _build_network(1, channels, 2, 50).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.from_numpy(((image - image.mean()) / image.std()).astype(np.float32))[None, None].to(device)
    target = torch.zeros(image.size, dtype=torch.long, device=device)
    autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast(device_type="cpu", enabled=False))

    def step():
        opt.zero_grad()
        with autocast:
            out = net(x)
        loss = torch.nn.functional.cross_entropy(out.permute(0, 2, 3, 1).reshape(-1, 50).float(), target)
        loss.backward()
        opt.step()

    return timed(step, repeats, sync)[0]


def whole_run(image: np.ndarray, truth: np.ndarray, *, scale: float, channels: int, max_iter: int,
              device: torch.device, loop: bool) -> dict:
    """Segment at ``scale`` (superpixel count scaled with the pixel count), upsample, score."""
    small = image if scale == 1 else resize(image, (round(image.shape[0] * scale), round(image.shape[1] * scale)),
                                            order=1, anti_aliasing=True, preserve_range=True)
    n_sp = max(int(50_000 * scale * scale), 100)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    arrays = _as_float_stack([small])
    sp = [slic_superpixels(arrays[0], n_superpixels=n_sp, compactness=20)]
    timings["superpixels"] = time.perf_counter() - start
    refine = LoopRefinement(sp[0]) if loop else None
    outcome = _train(arrays, sp, target=3, channels=channels, n_conv=2, n_outputs=50, lr=0.1, momentum=0.9,
                     max_iter=max_iter, seed=0, device=device, timings=timings, refine=refine)
    n_iter = outcome.n_iter
    labels = _relabel_by_intensity(arrays, outcome.labels)[0][0]
    total = time.perf_counter() - start
    if scale != 1:
        labels = resize(labels, image.shape, order=0, preserve_range=True, anti_aliasing=False).astype(np.int64)
    return {"scale": scale, "channels": channels, "refinement": "loop" if loop else "scatter",
            "n_superpixels": n_sp, "iterations": n_iter, "superpixels_s": timings["superpixels"],
            "cnn_s": timings.get("cnn", 0.0), "refine_s": timings.get("refine", 0.0), "total_s": total,
            "ari": adjusted_rand_index(truth, labels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip the slow paper-size CPU run")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    repeats = 1 if args.quick else 3
    image_da, truth = make_multiphase((1000, 1000), n_phases=3, seed=0)
    image = image_da.values.astype(np.float64)

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")
    refinement = refinement_comparison(image, device, repeats)
    print(f"superpixels: {refinement['superpixels_s']:.2f} s for {refinement['n_superpixels']} superpixels "
          f"on 1000 x 1000")
    print(f"refinement per iteration: scatter_add {refinement['refine_vectorised_s'] * 1e3:.1f} ms, "
          f"loop {refinement['refine_loop_s']:.2f} s -> {refinement['refine_ratio']:.0f}x faster")
    cnn_100 = cnn_iteration(image, device, 100, 1 if device.type == "cpu" else 10)
    print(f"one CNN iteration at 1000 x 1000, 100 channels: {cnn_100:.2f} s")

    settings = [(0.25, 32), (0.5, 32)] if device.type == "cpu" else [(1.0, 100), (0.5, 100)]
    if device.type == "cpu" and not args.quick:
        settings.append((0.5, 100))
    max_iter = 200
    runs = []
    for scale, channels in settings:
        for loop in (False, True):
            if loop and (scale, channels) != settings[0]:
                continue  # one loop run shows the whole-run effect; the loop is slow at 60k superpixels
            runs.append(whole_run(image, truth, scale=scale, channels=channels, max_iter=max_iter, device=device,
                                  loop=loop))
    header = (f"{'scale':>5} {'ch':>4} {'refine':>8} {'n_sp':>6} {'iter':>5} {'slic s':>7} {'cnn s':>7} "
              f"{'refine s':>9} {'total s':>8} {'ARI':>6}")
    print("\nwhole runs (3 classes; labels upsampled to 1000 x 1000 and scored against the truth)")
    print(header)
    for r in runs:
        print(f"{r['scale']:>5} {r['channels']:>4} {r['refinement']:>8} {r['n_superpixels']:>6} {r['iterations']:>5} "
              f"{r['superpixels_s']:>7.2f} {r['cnn_s']:>7.2f} {r['refine_s']:>9.3f} {r['total_s']:>8.2f} "
              f"{r['ari']:>6.3f}")
    best = max(runs, key=lambda r: r["ari"])
    fast = min((r for r in runs if r["refinement"] == "scatter"), key=lambda r: r["total_s"])
    iters_ref = best["iterations"]
    estimate = refinement["superpixels_s"] + iters_ref * (cnn_100 + refinement["refine_vectorised_s"])
    print(f"\nfull paper setting (1000 x 1000, 100 channels, ~{iters_ref} iterations) on this {device.type}: "
          f"~{estimate:.0f} s per image (estimated from one iteration)")
    print(f"CPU setting: scale {fast['scale']}, {fast['channels']} channels: {fast['total_s']:.1f} s per image, "
          f"ARI {fast['ari']:.3f} (best run here {best['ari']:.3f}: cost {best['ari'] - fast['ari']:.3f})")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "unsupervised.json"
    out.write_text(json.dumps({
        "device": str(device), "threads": torch.get_num_threads(), "quick": args.quick, "image": [1000, 1000],
        "refinement": refinement, "cnn_iteration_100ch_s": cnn_100, "runs": runs,
        "paper_setting_estimate_s": estimate,
    }, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
