"""PyTorch's side of `acon bench-op`: the same convolutions on a [32, 64, 56, 56] input, timed
the same way (median of 5 runs after 1 warm-up, 2 threads), to run beside it on the same machine.

Run: /opt/torchvenv/bin/python scripts/bench/conv_pytorch.py [--best]
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
best = "--best" in sys.argv
RUNS, WARMUP = 5, 1


def timed(prepare, body):
    for _ in range(WARMUP):
        prepare()
        body()
    times = []
    for _ in range(RUNS):
        prepare()
        t = time.perf_counter()
        body()
        times.append(time.perf_counter() - t)
    return min(times) if best else statistics.median(times)


for name, (cout, cin_g, k), padding, groups in [
    ("conv3x3 64->64 pad 1", (64, 64, 3), 1, 1),
    ("conv1x1 64->64", (64, 64, 1), 0, 1),
    ("depthwise3x3 64 pad 1", (64, 1, 3), 1, 64),
]:
    x = torch.randn(32, cin_g * groups, 56, 56, requires_grad=True)
    w = (torch.randn(cout, cin_g, k, k) * 0.1).requires_grad_(True)
    with torch.no_grad():
        y0 = F.conv2d(x, w, None, padding=padding, groups=groups)
    dy = torch.randn_like(y0)
    macs = y0.numel() * cin_g * k * k

    def forward():
        with torch.no_grad():
            F.conv2d(x, w, None, padding=padding, groups=groups)

    state = {}

    def prepare():
        x.grad = None
        w.grad = None
        state["y"] = F.conv2d(x, w, None, padding=padding, groups=groups)

    def backward():
        state["y"].backward(dy)

    f = timed(lambda: None, forward)
    b = timed(prepare, backward)
    print(f"{name:24} forward {f * 1e3:8.2f} ms {2 * macs / f * 1e-9:6.1f} GFLOP/s   "
          f"backward {b * 1e3:8.2f} ms {4 * macs / b * 1e-9:6.1f} GFLOP/s   "
          f"forward+backward {6 * macs / (f + b) * 1e-9:6.1f} GFLOP/s")
