"""Inference speed of segmentation on real micrographs, and memory of prediction on a huge mosaic.

Table 1 (one run, CPU or CUDA): on the real 481 x 645 UHCS micrographs in ../shared/data, a
U-Net with 16 base channels (the CPU recipe of examples/train_uhcs.yaml; random weights, which do
not change the speed) saved as a checkpoint:

* ``forward``: the bare network on the whole image, padded to its size multiple (torch);
* ``predict_files``: the whole user path per image, defaults without TTA (read the PNG, plan
  whole-image vs tiles, normalise, forward, labels, class fractions, write labels + overlay in a
  background thread);
* ``predict_files --tile 512 --overlap 64``: the former default path, for reference;
* ``onnxruntime``: the same network exported to ONNX (``metallo export --onnx``), bare
  forward and through ``predict_files``, when onnxruntime is installed.

The ratio ``predict_files / forward`` is the pipeline overhead (target <= 1.5).

Table 2: peak resident memory of ``predict_array`` with the default plan (tiles beyond the
activation budget, overlap from the receptive field) on a memory-mapped 10 240 x 10 240 mosaic
(a thin U-Net so the run stays short on a CPU), in a fresh process (target <= 1.5 GiB).

    python benchmarks/segment_speed.py [--images 5] [--mosaic 10240] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from metallo.segment import get_model, resolve_device, save_checkpoint
from metallo.segment._data import read_micrograph, to_unit_range
from metallo.segment._infer import plan_inference, predict_array, predict_files

ROOT = Path(__file__).resolve().parents[1]


def _high_water_mib() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it restarts at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _images(n: int) -> list[Path]:
    shared = Path(os.environ.get("METALLO_SHARED_DATA", ROOT.parent / "shared" / "data"))
    folder = shared / "uhcs_microconstituent_segmentation" / "images"
    if not folder.is_dir():
        raise SystemExit(f"UHCS micrographs not found at {folder}")
    return sorted(folder.glob("*.png"))[:n]


def _per_image(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up (allocator, oneDNN primitives, receptive-field probe)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / n_images


def speed_table(images: list[Path], device: torch.device, repeats: int, tmp: Path) -> dict:
    torch.manual_seed(0)
    net = get_model("unet", n_classes=4, base_channels=16).to(device).eval()
    checkpoint = save_checkpoint(tmp / "unet16.pt", net, classes=["matrix", "network", "spheroidite", "widmanstatten"],
                                 mean=[0.5], std=[0.25], tile={"size": 256, "scale": 1.0})
    arrays = [read_micrograph(p).values for p in images]
    tensors = [torch.from_numpy(((to_unit_range(a[..., None] if a.ndim == 2 else a[..., :1]) - 0.5) / 0.25)
                                .transpose(2, 0, 1)[None].astype(np.float32)).to(device) for a in arrays]

    def forward(model=net):
        with torch.inference_mode():
            for x in tensors:
                model(x).argmax(1).cpu()

    def files(checkpoint=checkpoint, **options):
        predict_files(checkpoint, images, out_dir=tmp / "pred", device=device.type, tta=False, **options)

    rows: dict = {"shape": list(arrays[0].shape[:2]), "n_images": len(images), "device": device.type,
                  "plan": vars(plan_inference(net, arrays[0].shape))}
    rows["forward_s"] = _per_image(forward, len(images), repeats)
    rows["predict_files_s"] = _per_image(files, len(images), repeats)
    rows["predict_files_tile512_s"] = _per_image(lambda: files(tile=512, overlap=64), len(images), repeats)
    rows["ratio_predict_files_vs_forward"] = rows["predict_files_s"] / rows["forward_s"]
    rows["ratio_tile512_vs_forward"] = rows["predict_files_tile512_s"] / rows["forward_s"]
    try:
        from metallo.segment._onnx import export_onnx, load_onnx

        onnx_path = export_onnx(checkpoint)
    except ImportError as exc:  # onnx / onnxruntime not installed: the table says so
        rows["onnx"] = f"not measured: {exc}"
    else:
        if device.type == "cpu":
            onnx_model, _ = load_onnx(onnx_path)
            rows["onnx_forward_s"] = _per_image(lambda: forward(onnx_model), len(images), repeats)
            rows["onnx_predict_files_s"] = _per_image(lambda: files(onnx_path), len(images), repeats)
            rows["ratio_onnx_vs_torch_forward"] = rows["onnx_forward_s"] / rows["forward_s"]
    for key, value in rows.items():
        print(f"  {key:<34} {value if not isinstance(value, float) else f'{value:.3f}'}", flush=True)
    return rows


def _memory_child(side: int, device: str, queue) -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)  # the receptive radius, and so the overlap, is measured on this random network
    net = get_model("unet", n_classes=4, base_channels=4).eval()
    with tempfile.TemporaryDirectory() as tmp:
        image = np.lib.format.open_memmap(Path(tmp) / "mosaic.npy", mode="w+", dtype=np.uint8, shape=(side, side))
        for r in range(0, side, 1024):  # write in strips so the writer does not hold it all
            image[r:r + 1024] = (np.arange(r, min(r + 1024, side))[:, None] * 7 + np.arange(side)[None]) % 251
        image.flush()
        out = np.lib.format.open_memmap(Path(tmp) / "labels.npy", mode="w+", dtype=np.uint8, shape=(side, side))
        before = _high_water_mib()
        plan = plan_inference(net, (side, side))
        start = time.perf_counter()
        predict_array(net, image, mean=[0.5], std=[0.25], device=device, labels_out=out)
        elapsed = time.perf_counter() - start
        peak = _high_water_mib()
    queue.put({"side": side, "plan": vars(plan), "peak_rss_mib": peak, "rss_before_mib": before,
               "seconds": elapsed, "image_mib": side * side / 2**20})


def memory_row(side: int, device: torch.device) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(side, device.type, queue))
    proc.start()
    row = queue.get()
    proc.join()
    print(f"  {side} px mosaic: peak RSS {row['peak_rss_mib']:.0f} MiB (before {row['rss_before_mib']:.0f} MiB, "
          f"image {row['image_mib']:.0f} MiB on disk), plan {row['plan']}, {row['seconds']:.1f} s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5, help="UHCS micrographs timed (0 = skip)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mosaic", type=int, default=10240, help="side of the memory-mapped mosaic (0 = skip)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    speed = None
    if args.images:
        print(f"inference per 481 x 645 UHCS micrograph, U-Net 16, {device.type}, {torch.get_num_threads()} threads")
        with tempfile.TemporaryDirectory() as tmp:
            speed = speed_table(_images(args.images), device, args.repeats, Path(tmp))
    memory = None
    if args.mosaic:
        print("peak memory of prediction with the default plan, memory-mapped uint8 input and output")
        memory = memory_row(args.mosaic, device)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    result = {"speed": speed, "memory": memory, "torch_threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "load_average": os.getloadavg()}
    name = "segment_speed" if speed is not None else "segment_speed_memory"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"saved {out / (name + '.json')}")


if __name__ == "__main__":
    main()
