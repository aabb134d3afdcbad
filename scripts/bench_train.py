"""Overhead of genaug's training loop vs a minimal hand-written PyTorch loop (same backbone, batch, loss, optimizer).

CPU mode (default): SimCLR with the tiny conv backbone on in-memory batches, so both sides do identical compute and
the difference is the loop itself (Accelerate wrapping, autocast context, schedule, logging, EMA hooks, final
checkpoint). Runs alternate (hand, genaug, hand, ...) and the median of each is reported.
GPU mode (--gpu): ResNet-50 images/s in bf16 through genaug's loop, with and without channels_last and compile.

    python scripts/bench_train.py [--steps 60] [--batch 32] [--size 32] [--repeats 3]
    python scripts/bench_train.py --gpu [--batch 256] [--steps 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from genaug.ssl.losses import nt_xent
from genaug.ssl.methods import build_method
from genaug.train.loop import LoopConfig, Trainer
from genaug.train.optim import WarmupCosine


class Batches:
    """A fixed list of two-view batches, served in order forever-per-epoch."""

    def __init__(self, n: int, batch: int, size: int, device: str = "cpu") -> None:
        g = torch.Generator().manual_seed(0)
        self.items = [
            {"views": [torch.randn(batch, 3, size, size, generator=g).to(device) for _ in range(2)], "label": None}
            for _ in range(n)
        ]

    def __iter__(self):
        return iter(self.items)


def make_method(backbone: str, size: int, width: int):
    torch.manual_seed(0)
    return build_method(
        {
            "method": "simclr",
            "backbone": {"name": backbone, "width": width},
            "data": {"image_size": size},
            "method_args": {"proj_hidden": 256, "proj_out": 64},
        }
    )


def hand_loop(steps: int, data: Batches, backbone: str, size: int, width: int, device: str, bf16: bool) -> float:
    """The minimal loop: forward both views, NT-Xent, backward, SGD step. Returns seconds."""
    m = make_method(backbone, size, width).to(device).train()
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-6)
    items = data.items
    _sync(device)
    t = time.perf_counter()
    for i in range(steps):
        v1, v2 = items[i % len(items)]["views"]
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            h = m.backbone(torch.cat([v1, v2]))
            z = m.projector(h).float()
            loss = nt_xent(*z.chunk(2), 0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - t


def genaug_loop(
    steps: int,
    data: Batches,
    backbone: str,
    size: int,
    width: int,
    device: str,
    bf16: bool,
    channels_last: bool = False,
    compile: bool = False,
) -> float:
    """The same training through genaug's Trainer (Accelerate, schedule, logging, final checkpoint). Seconds."""
    m = make_method(backbone, size, width)
    cfg = LoopConfig(
        total_steps=steps,
        steps_per_epoch=len(data.items),
        log_every=10,
        precision="bf16" if bf16 else "no",
        progress_bar=False,
        tensorboard=False,
        channels_last=channels_last,
        compile=compile,
        keep_checkpoints=1,
    )
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(
            m,
            data,
            lambda mod: torch.optim.SGD(mod.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-6),
            lambda opt: WarmupCosine(opt, steps, 0),
            cfg,
            Path(d),
        )
        _sync(device)
        t = time.perf_counter()
        tr.fit()
        _sync(device)
        return time.perf_counter() - t


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def cpu_bench(args) -> None:
    data = Batches(8, args.batch, args.size)
    hand_loop(3, data, "tiny", args.size, args.width, "cpu", False)  # warm-up
    hand, gen = [], []
    for _ in range(args.repeats):
        hand.append(hand_loop(args.steps, data, "tiny", args.size, args.width, "cpu", False))
        gen.append(genaug_loop(args.steps, data, "tiny", args.size, args.width, "cpu", False))
    h, g = statistics.median(hand), statistics.median(gen)
    print(
        f"CPU, SimCLR, tiny backbone (width {args.width}), batch {args.batch}x2 views at {args.size} px, "
        f"{args.steps} steps, median of {args.repeats}, torch threads {torch.get_num_threads()}"
    )
    print(f"hand-written loop: {args.steps / h:.2f} steps/s   (runs: {', '.join(f'{x:.2f}s' for x in hand)})")
    print(f"genaug loop:       {args.steps / g:.2f} steps/s   (runs: {', '.join(f'{x:.2f}s' for x in gen)})")
    print(f"overhead of genaug: {100 * (g / h - 1):+.1f} %  (goal < 5 %)")


def gpu_bench(args) -> None:
    data = Batches(4, args.batch, 224, "cuda")
    print(f"GPU {torch.cuda.get_device_name()}, SimCLR, ResNet-50, batch {args.batch}x2 views at 224 px, bf16")
    hand_loop(5, data, "resnet50", 224, 16, "cuda", True)
    h = hand_loop(args.steps, data, "resnet50", 224, 16, "cuda", True)
    print(f"hand-written loop bf16: {2 * args.batch * args.steps / h:.0f} images/s")
    for cl, comp in ((False, False), (True, False), (False, True), (True, True)):
        genaug_loop(5, data, "resnet50", 224, 16, "cuda", True, cl, comp)  # warm-up (and compilation)
        t = genaug_loop(args.steps, data, "resnet50", 224, 16, "cuda", True, cl, comp)
        print(f"genaug bf16 channels_last={cl!s:5} compile={comp!s:5}: {2 * args.batch * args.steps / t:.0f} images/s")


def main() -> None:
    """Run the CPU overhead benchmark, or the GPU throughput one with --gpu."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gpu", action="store_true")
    args = ap.parse_args()
    gpu_bench(args) if args.gpu else cpu_bench(args)


if __name__ == "__main__":
    main()
