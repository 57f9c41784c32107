"""Speed and memory of MUNet and its peers, side by side in one run on the same input.

    munet benchmark [--size 384] [--batch 8] [--iters 5] [--output docs/benchmarks_table.md]

For each network (MUNet with the default encoder, ResNet-50 and EfficientNet-Lite0/Lite1 backbones, the
U-Net baseline, MONAI FlexibleUNet-ResNet50 and BasicUNet), at 1 channel, 256x256 and the size
given, batch ``--batch``: training images/s (forward, loss, backward, Adam step), inference
images/s (no grad) and peak memory, in fp32 and with the CPU fast path (bf16 autocast +
channels-last), each as a ratio to FlexibleUNet-ResNet50 in fp32 measured in the same run. Then
the end-to-end inference time per image, from a DICOM file to a written mask, split into load,
preprocess, network, fusion and write. Every measurement runs in its own process, so peak memory
(max RSS, or CUDA max allocated on a GPU) belongs to that network alone.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fire

NETWORKS = {
    "MUNet (paper encoder, width 32)": {"kind": "munet", "backbone": "munet", "base_channels": 32},
    "MUNet-ResNet50": {"kind": "munet", "backbone": "resnet50"},
    "MUNet-EfficientNet-Lite0": {"kind": "munet", "backbone": "efficientnet_lite0"},
    "MUNet-EfficientNet-Lite1": {"kind": "munet", "backbone": "efficientnet_lite1"},
    "U-Net baseline (width 32)": {"kind": "unet", "base_channels": 32},
    "FlexibleUNet-ResNet50 (MONAI)": {"kind": "flexible"},
    "BasicUNet (MONAI)": {"kind": "basic"},
}
REFERENCE = "FlexibleUNet-ResNet50 (MONAI)"
MODES = {"fp32": {"precision": "fp32", "channels_last": False}, "bf16+CL": {"precision": "bf16", "channels_last": True},
         "auto": {"precision": "auto", "channels_last": False}}


def capability() -> str:
    """This machine's compute capability, printed with every figure: figures from AVX2-only and
    AVX512-BF16 CPUs differ by up to 10x for bf16, so a figure without it cannot be compared."""
    import torch

    from munet.engines.inferer import cpu_capability

    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name()}, bf16 {'native' if torch.cuda.is_bf16_supported() else 'no'}"
    cpu = cpu_capability()
    return f"CPU {cpu['capability']}, native bf16 {'yes' if cpu['native_bf16'] else 'no (emulated)'}"


def _build(spec: Dict):
    from monai.networks.nets import BasicUNet, FlexibleUNet

    from munet.networks import build_network

    kind = spec["kind"]
    if kind == "flexible":
        return FlexibleUNet(in_channels=1, out_channels=1, backbone="resnet50", pretrained=False, spatial_dims=2)
    if kind == "basic":
        return BasicUNet(spatial_dims=2, in_channels=1, out_channels=1)
    kwargs = {k: v for k, v in spec.items() if k != "kind"}
    return build_network(arch=kind, output="dict", **kwargs)


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(name: str, mode: str, size: int, batch: int, iters: int, warmup: int, train: bool, meta: bool = False) -> Dict:
    """One measurement in this process: images/s and peak memory of ``name`` (used by the subprocesses).

    ``meta`` feeds the network a MetaTensor (as MONAI's loaders give) instead of a plain tensor.
    """
    import contextlib

    import torch
    from monai.losses import DiceLoss

    from munet.losses import MUNetLoss

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    spec, options = NETWORKS[name], MODES[mode]
    net = _build(spec).to(device)
    memory_format = torch.channels_last if options["channels_last"] else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    x = torch.rand(batch, 1, size, size, device=device).contiguous(memory_format=memory_format)
    if meta:
        from monai.data import MetaTensor

        x = MetaTensor(x)
    mask = (torch.rand(batch, 1, size, size, device=device) > 0.7).float()
    classes = torch.randint(0, 2, (batch,), device=device)
    ours = spec["kind"] in ("munet", "unet")
    loss_fn = MUNetLoss() if ours else DiceLoss(sigmoid=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    from munet.engines.inferer import resolve_precision

    precision = resolve_precision(options["precision"], device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext

    def step() -> None:
        if train:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                out = net(x)
            out = {k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float()
            loss = loss_fn(out, {"mask": mask, "class": classes}) if ours else loss_fn(out, mask)
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad(), autocast():
                net(x)

    net.train(train)
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images_per_s": batch * iters / seconds, "peak_mb": _peak_memory_mb(device), "precision": precision}


def _run_child(args: List[str]) -> Dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env={**os.environ})
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def end_to_end(size_limit: int = 256, repeats: int = 5) -> Dict:
    """Seconds per image from a DICOM file to a written mask, by stage, for the default MUNet."""
    import numpy as np
    import torch
    from monai.transforms import Compose, Invertd
    from PIL import Image

    from munet.data.preprocessing import deterministic_transforms
    from munet.dataset_tools.demo_dataset import generate_demo_dataset
    from munet.networks import build_network

    work = Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    generate_demo_dataset(str(work / "data"), n_train=0, n_val=0, n_test=repeats, image_format="dicom", min_size=300, max_size=420)
    files = sorted((work / "data" / "images").glob("*.dcm"))
    chain = deterministic_transforms(label_key=None, class_key=None, image_size=size_limit, crop_to_us_region=True)
    load, rest = chain[0], Compose(chain[1:])
    full = Compose(chain)
    net = build_network("munet", output="dict", base_channels=32).eval()
    invert = Invertd(keys="pred", transform=full, orig_keys="image", nearest_interp=False)
    totals = {"load": 0.0, "preprocess": 0.0, "network": 0.0, "fusion": 0.0, "write": 0.0}
    with torch.no_grad():
        net(torch.rand(1, 1, size_limit, size_limit))  # warm-up
        for index, file in enumerate(files):
            t0 = time.perf_counter()
            sample = load({"image": str(file)})
            t1 = time.perf_counter()
            sample = rest(sample)
            t2 = time.perf_counter()
            x = sample["image"][None]
            features = net.encoder(x)
            stages = net.decoder(features)
            logits = [head(stage) for head, stage in zip(net.mask_heads, stages)]
            net.class_head(features[4])
            t3 = time.perf_counter()
            best = net.fusion(logits, [x.shape[2], x.shape[3]])
            t4 = time.perf_counter()
            sample["pred"] = best[0]
            mask = invert(sample)["pred"][0].numpy() >= 0.5
            Image.fromarray((mask * 255).astype(np.uint8)).save(work / f"mask_{index}.png")
            t5 = time.perf_counter()
            for key, (a, b) in zip(totals, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5))):
                totals[key] += b - a
    per_image = {k: v / len(files) for k, v in totals.items()}
    per_image["total"] = sum(per_image.values())
    return per_image


def main(size: int = 384, batch: int = 8, iters: int = 5, warmup: int = 2, output: str = "", networks: str = "",
         modes: str = "fp32,bf16+CL", e2e: bool = True, scaling: bool = True, loop: bool = True, only_loop: bool = False) -> None:
    """Measure every network and mode at 256x256 and ``size``; print a table (and write it to ``output``)."""
    import torch

    chosen = [n.strip() for n in networks.split(";") if n.strip()] or list(NETWORKS)
    chosen_modes = [m for m in (modes if isinstance(modes, (list, tuple)) else modes.split(",")) if m]  # fire reads "a,b" as a tuple
    sizes = sorted({256, int(size)})
    cpu = f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    device = "GPU " + torch.cuda.get_device_name() if torch.cuda.is_available() else cpu
    lines = [f"Device: {device}, {capability()}; torch {torch.__version__}; batch {batch}, 1 channel; "
             f"{iters} timed iterations after {warmup} warm-up.", ""]
    results: Dict = {}
    if only_loop:
        sizes, scaling, e2e = [], False, False
    for s in sizes:
        for name in chosen:
            for mode in chosen_modes:
                for train in (True, False):
                    args = ["_child", "--name", name, "--mode", mode, "--size", str(s), "--batch", str(batch), "--iters", str(iters),
                            "--warmup", str(warmup), "--train", str(train)]
                    results[(s, name, mode, train)] = _run_child(args)
                    r = results[(s, name, mode, train)]
                    print(f"{s}px {name} {mode} ({r['precision']}) {'train' if train else 'infer'}: {r['images_per_s']:.2f} img/s, "
                          f"peak {r['peak_mb']:.0f} MB [{capability()}]", flush=True)
    for s in sizes:
        ref_train = results.get((s, REFERENCE, "fp32", True), {}).get("images_per_s")
        ref_infer = results.get((s, REFERENCE, "fp32", False), {}).get("images_per_s")
        lines += [f"### {s}x{s}", "", "| network | mode | train img/s | x Flexible | infer img/s | x Flexible | peak MB (train) |",
                  "|---|---|---|---|---|---|---|"]
        for name in chosen:
            for mode in chosen_modes:
                tr, inf = results[(s, name, mode, True)], results[(s, name, mode, False)]
                rt = f"{tr['images_per_s'] / ref_train:.2f}" if ref_train else "-"
                ri = f"{inf['images_per_s'] / ref_infer:.2f}" if ref_infer else "-"
                lines.append(f"| {name} | {mode} | {tr['images_per_s']:.2f} | {rt} | {inf['images_per_s']:.2f} | {ri} | {tr['peak_mb']:.0f} |")
        lines.append("")
    if scaling:
        base = "MUNet (paper encoder, width 32)"
        lines += [f"### How cost grows: {base}, fp32", "", "| size | batch | train img/s | infer img/s | peak MB (train) |", "|---|---|---|---|---|"]
        for s, b in [(256, 8), (384, 8), (512, 8), (256, 1), (256, 4), (256, 16)]:
            step = ["_child", "--name", base, "--mode", "fp32", "--size", str(s), "--batch", str(b), "--iters", str(iters), "--warmup", str(warmup)]
            tr = _run_child(step + ["--train", "True"])
            inf = _run_child(step + ["--train", "False"])
            lines.append(f"| {s}x{s} | {b} | {tr['images_per_s']:.2f} | {inf['images_per_s']:.2f} | {tr['peak_mb']:.0f} |")
            print(lines[-1], flush=True)
        lines.append("")
    if loop:
        lines += training_loop(batch=batch)
        print("\n".join(lines[-5:]), flush=True)
        lines.append("")
    if e2e:
        stages = end_to_end()
        lines += ["### End-to-end inference, DICOM file to written mask (MUNet default, 256 px, fp32)", "",
                  "| stage | ms per image | share |", "|---|---|---|"]
        for key, value in stages.items():
            if key != "total":
                lines.append(f"| {key} | {value * 1000:.1f} | {value / stages['total']:.0%} |")
        lines.append(f"| total | {stages['total'] * 1000:.1f} | 100% |")
    table = "\n".join(lines)
    print(table)
    if output:
        Path(output).write_text(table + "\n")


def _child(name: str, mode: str, size: int, batch: int, iters: int, warmup: int, train: bool, meta: bool = False) -> None:
    print(json.dumps(measure(name, mode, int(size), int(batch), int(iters), int(warmup), bool(train), bool(meta))))


def training_loop(size: int = 128, batch: int = 8, epochs: int = 3, n_train: int = 48, iters: int = 6, repeats: int = 2) -> List[str]:
    """The bundle's own training loop (data, augmentation, handlers, validation) against the raw step.

    The raw step is measured twice per input kind, alternating plain tensor and MetaTensor, so a
    machine that speeds up or slows down during the run shows as spread rather than as a difference.
    The loop's images/s is the training images over the seconds of its last epoch (after caching),
    validation included, as ``TrainingProgress`` logs it.
    """
    import re

    from munet.dataset_tools.demo_dataset import generate_demo_dataset
    from munet.engines.bundle_folder import config_arg, run_bundle_command

    name = "MUNet (paper encoder, width 32)"
    raw: Dict[str, List[float]] = {"plain": [], "meta": []}
    for _ in range(repeats):
        for kind in ("plain", "meta"):
            r = _run_child(["_child", "--name", name, "--mode", "fp32", "--size", str(size), "--batch", str(batch),
                            "--iters", str(iters), "--warmup", "2", "--train", "True", "--meta", str(kind == "meta")])
            raw[kind].append(r["images_per_s"])
    work = Path(tempfile.mkdtemp(prefix="bench_loop_"))
    generate_demo_dataset(str(work / "data"), n_train=n_train, n_val=8, n_test=0, image_format="png")
    log = work / "train.log"
    run_bundle_command(["run", "training", "--config_file", config_arg(["configs/train.json", "configs/recipes/paper.json"]),
                        "--meta_file", "configs/metadata.json",
                        "--logging_file", "configs/logging.conf", "--bundle_root", str(work / "bundle"),
                        "--dataset_dir", str(work / "data"), "--image_size", str(size), "--batch_size", str(batch),
                        "--max_epochs", str(epochs)], log)
    seconds = [float(m) for m in re.findall(r"epoch \d+/\d+ .*?\s([\d.]+)s\s+ETA", log.read_text())]
    loop = n_train / seconds[-1] if seconds else float("nan")
    plain = sum(raw["plain"]) / len(raw["plain"])
    lines = [f"### The bundle's training loop against the raw step ({name}, {size} px, batch {batch}, fp32, {capability()})", "",
             "| what | train img/s | x raw step (plain tensor) |", "|---|---|---|",
             f"| raw step, plain tensor input (runs: {', '.join(f'{v:.2f}' for v in raw['plain'])}) | {plain:.2f} | 1.00 |"]
    meta = sum(raw["meta"]) / len(raw["meta"])
    lines.append(f"| raw step, MetaTensor input (runs: {', '.join(f'{v:.2f}' for v in raw['meta'])}) | {meta:.2f} | {meta / plain:.2f} |")
    lines.append(f"| bundle training loop, last of {epochs} epochs, {n_train} images + 8 validated | {loop:.2f} | {loop / plain:.2f} |")
    return lines


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        fire.Fire(_child, command=sys.argv[2:])
    else:
        fire.Fire(main)
