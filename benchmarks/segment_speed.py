"""Inference speed of the segmentation models and memory of tiled prediction on huge images.

Table 1: images/s for each model at 1024 x 1024 (``--quick`` on CPU: 128 x 128, said in the
output), batch sizes 1 and 8, float32 on CPU and float16 autocast on CUDA. Two numbers per row:
the bare network forward pass and the whole ``predict_array`` pipeline (normalise, tile, blend,
argmax); their ratio is the pipeline efficiency measured in the same run.

Table 2: training steps/s of the U-Net (tile 256, batch 4) in float32 and with ``amp`` (float16
on CUDA; bfloat16 + channels-last on CPUs with AMX/AVX512-BF16, as ``train`` chooses), same run.

Table 3: peak resident memory of ``predict_array`` on a memory-mapped square image of growing
side (2048, 4096 and 10 240 px, a thin U-Net), each in a fresh process. Memory follows
the tile batch and the strip buffer (classes x tile x width), not the image area.

    /work/venv/bin/python benchmarks/segment_speed.py --quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from metallo.segment import get_model, resolve_device
from metallo.segment._infer import predict_array

MODELS = {"unet": {}, "unet_vgg16": {}, "pixelnet": {}}


def _throughput(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up (cuDNN autotune, allocator)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n_images * repeats / (time.perf_counter() - start)


def speed_table(size: int, device: torch.device, repeats: int) -> list[dict]:
    rows = []
    amp = device.type == "cuda"
    for name, kwargs in MODELS.items():
        net = get_model(name, n_classes=4, **kwargs).to(device).eval()
        for batch in (1, 8):
            x = torch.rand(batch, 1, size, size, device=device)
            images = np.random.default_rng(0).integers(0, 255, (batch, size, size), dtype=np.uint8)

            def forward(x=x, net=net):
                with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    net(x).argmax(1)

            def pipeline(images=images, net=net, batch=batch):
                for image in images:
                    # Whole image, no overlap padding: the ratio is the pipeline overhead alone.
                    predict_array(net, image, mean=[0.5], std=[0.25], tile=None, overlap=0,
                                  batch_size=batch, device=device, amp=amp)

            fwd = _throughput(forward, batch, repeats)
            pipe = _throughput(pipeline, batch, repeats)
            rows.append({"model": name, "device": device.type, "amp": amp, "size": size, "batch": batch,
                         "forward_images_per_s": fwd, "predict_images_per_s": pipe, "ratio": pipe / fwd})
            print(f"{name:<11}{device.type:>6}{size:>6}{batch:>6}{fwd:>12.2f}{pipe:>12.2f}{pipe / fwd:>8.2f}",
                  flush=True)
    return rows


def training_table(device: torch.device, base_channels: int, repeats: int) -> list[dict]:
    from metallo.segment._checkpoint import autocast_dtype

    rows = []
    dtype = autocast_dtype(device, amp=True)
    for label, amp_dtype in (("float32", None), (str(dtype).removeprefix("torch."), dtype)):
        if label != "float32" and amp_dtype is None:
            print(f"{'':<11}{device.type:>6}  no fast mixed precision on this device: float32 only")
            continue
        torch.manual_seed(0)
        net = get_model("unet", n_classes=4, base_channels=base_channels).to(device)
        x = torch.rand(4, 1, 256, 256, device=device)
        y = torch.randint(0, 4, (4, 256, 256), device=device)
        if amp_dtype == torch.bfloat16:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

        def step(net=net, x=x, y=y, opt=opt, scaler=scaler, amp_dtype=amp_dtype):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                loss = torch.nn.functional.cross_entropy(net(x).float(), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        rate = _throughput(step, 1, repeats)
        rows.append({"model": "unet", "base_channels": base_channels, "device": device.type, "precision": label,
                     "tile": 256, "batch": 4, "steps_per_s": rate})
    for row in rows:
        row["speedup_vs_float32"] = row["steps_per_s"] / rows[0]["steps_per_s"]
        print(f"{'unet':<11}{device.type:>6}{base_channels:>6}{row['precision']:>10}{row['steps_per_s']:>10.2f}"
              f"{row['speedup_vs_float32']:>9.2f}x", flush=True)
    return rows


def _high_water_mib() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it restarts at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory_child(side: int, tile: int, batch: int, device: str, queue) -> None:
    torch.set_num_threads(2)
    net = get_model("unet", n_classes=4, base_channels=4).eval()
    with tempfile.TemporaryDirectory() as tmp:
        image = np.lib.format.open_memmap(Path(tmp) / "mosaic.npy", mode="w+", dtype=np.uint8, shape=(side, side))
        for r in range(0, side, 1024):  # write in strips so the writer does not hold it all
            image[r:r + 1024] = (np.arange(r, min(r + 1024, side))[:, None] * 7 + np.arange(side)[None]) % 251
        image.flush()
        out = np.lib.format.open_memmap(Path(tmp) / "labels.npy", mode="w+", dtype=np.uint8, shape=(side, side))
        before = _high_water_mib()
        start = time.perf_counter()
        predict_array(net, image, mean=[0.5], std=[0.25], tile=tile, overlap=64, batch_size=batch,
                      device=device, labels_out=out)
        elapsed = time.perf_counter() - start
        peak = _high_water_mib()
        if device == "cuda":
            gpu = torch.cuda.max_memory_allocated() / 2**20
        else:
            gpu = 0.0
    queue.put({"side": side, "tile": tile, "batch": batch, "peak_rss_mib": peak,
               "rss_before_mib": before, "gpu_peak_mib": gpu, "seconds": elapsed,
               "image_mib": side * side / 2**20, "strip_buffer_mib": 4 * 5 * tile * (side + tile) / 2**20})


def memory_table(sides: list[int], device: torch.device) -> list[dict]:
    ctx = mp.get_context("spawn")
    rows = []
    for side in sides:
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_child, args=(side, 512, 4, device.type, queue))
        proc.start()
        row = queue.get()
        proc.join()
        rows.append(row)
        print(f"{side:>7} px  peak RSS {row['peak_rss_mib']:8.0f} MiB, before {row['rss_before_mib']:6.0f} MiB  (image {row['image_mib']:6.0f} MiB uint8, "
              f"strip buffer ~{row['strip_buffer_mib']:5.0f} MiB, GPU peak {row['gpu_peak_mib']:6.0f} MiB)  "
              f"{row['seconds']:7.1f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU: 128 px images for the speed table")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    quick = args.quick or device.type == "cpu"
    size = 128 if quick else 1024
    print(f"inference speed, {size} x {size} px" + (" (reduced from 1024 on CPU)" if size != 1024 else ""))
    print(f"{'model':<11}{'device':>6}{'size':>6}{'batch':>6}{'fwd img/s':>12}{'pred img/s':>12}{'ratio':>8}")
    speed = speed_table(size, device, repeats=3 if quick else 10)
    base = 16 if quick else 64
    print(f"\ntraining steps/s, U-Net base {base}, tile 256, batch 4 (float32 vs mixed precision)")
    print(f"{'model':<11}{'device':>6}{'base':>6}{'precision':>10}{'steps/s':>10}{'speedup':>10}")
    training = training_table(device, base, repeats=5 if quick else 20)
    # A thin U-Net keeps the 10k x 10k run short on CPU; memory is dominated by tiles and buffers.
    sides = [2048, 4096, 10240]
    print("\npeak memory of tiled prediction, memory-mapped uint8 input and output, tile 512, batch 4")
    memory = memory_table(sides, device)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "segment_speed.json").write_text(json.dumps({"speed": speed, "training": training, "memory": memory, "quick": quick,
                                                        "torch_threads": torch.get_num_threads()}, indent=1))
    print(f"saved {out / 'segment_speed.json'}")


if __name__ == "__main__":
    main()
