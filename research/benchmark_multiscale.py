"""What cuDNN autotuning costs and gives under multi-scale training, on a GPU.

    python -m research.benchmark_multiscale --backbone efficientnet_lite2 --batch 32

Multi-scale training (``multiscale_sizes`` 256/384/512/640) gives every batch one of the 16
(height, width) pairs of the size set. ``torch.backends.cudnn.benchmark`` (the bundle's
``cudnn_benchmark``, on by default) autotunes every convolution once per new input shape, so the
first epoch pays for 16 shapes (forward and backward) before the later ones gain. This script runs
the training step (bf16 autocast + channels-last, as ``precision auto`` does on a GPU) over every
pair twice, each setting in a fresh process, and prints the seconds of each pass: the first pass is
what the first epoch pays, the second what every later epoch pays. The device is printed with the
figures. Written for the project's benchmarks because no benchmark of MONAI or PyTorch measures
this for a given network and shape set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Dict, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fire


def _sizes(value) -> list:
    """``"256,384"`` (or the tuple fire makes of it) -> ``[256, 384]``."""
    return [int(s) for s in (value if isinstance(value, (list, tuple)) else str(value).split(","))]


def passes(backbone: str, batch: int, sizes: Sequence[int], cudnn_benchmark: bool, repeats: int = 2) -> Dict:
    """Seconds of each pass over all (height, width) pairs of ``sizes``, in this process."""
    import torch

    from munet.losses import MUNetLoss
    from munet.networks import build_network

    torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    net = build_network(arch="munet", output="dict", backbone=backbone).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    loss_fn = MUNetLoss()
    dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    shapes = [(h, w) for h in sizes for w in sizes]
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for h, w in shapes:
            x = torch.rand(batch, 1, h, w, device=device).contiguous(memory_format=torch.channels_last)
            target = {"mask": (torch.rand(batch, 1, h, w, device=device) > 0.7).float(),
                      "class": torch.randint(0, 2, (batch,), device=device)}
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype):
                out = net(x)
            loss = loss_fn({k: v.float() for k, v in out.items()}, target)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    return {"device": name, "shapes": len(shapes), "seconds": seconds}


def main(backbone: str = "efficientnet_lite2", batch: int = 32, sizes: str = "256,384,512,640", output: str = "") -> None:
    """Both settings, each in its own process; prints a table (and writes it to ``output``)."""
    size_list = _sizes(sizes)
    rows = {}
    for setting in (True, False):
        args = [sys.executable, __file__, "_child", "--backbone", backbone, "--batch", str(batch),
                "--sizes", ",".join(map(str, size_list)), "--cudnn_benchmark", str(setting)]
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])
        rows[setting] = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"cudnn_benchmark {setting}: {rows[setting]}", flush=True)
    device = rows[True]["device"]
    lines = [f"MUNet-{backbone}, batch {batch}, bf16 autocast + channels-last, train steps over the "
             f"{rows[True]['shapes']} (height, width) pairs of {size_list}; {device}", "",
             "| cudnn_benchmark | first pass s (first epoch) | second pass s (later epochs) |", "|---|---|---|"]
    for setting, row in rows.items():
        lines.append(f"| {setting} | {row['seconds'][0]:.1f} | {row['seconds'][1]:.1f} |")
    table = "\n".join(lines)
    print(table)
    if output:
        with open(output, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        fire.Fire(lambda backbone, batch, sizes, cudnn_benchmark: print(json.dumps(passes(
            backbone, int(batch), _sizes(sizes),
            str(cudnn_benchmark) == "True"))), command=sys.argv[2:])
    else:
        fire.Fire(main)
