"""PyTorch eager reference ACON-C, forward + backward, for `acon bench-activation` comparisons.

Run: /opt/torchvenv/bin/python scripts/bench/acon_torch.py [N C H W] (default 64 64 56 56).
Prints the median of a few runs of forward and backward, and the bytes autograd saves.
"""
import statistics
import sys
import time

import torch

torch.set_num_threads(2)
shape = tuple(int(v) for v in sys.argv[1:5]) if len(sys.argv) >= 5 else (64, 64, 56, 56)
c = shape[1]
torch.manual_seed(0)
x = torch.randn(*shape, requires_grad=True)
p1 = torch.randn(1, c, 1, 1, requires_grad=True)
p2 = torch.randn(1, c, 1, 1, requires_grad=True)
beta = torch.ones(1, c, 1, 1, requires_grad=True)
g = torch.randn(*shape)


def acon(x):
    return (p1 * x - p2 * x) * torch.sigmoid(beta * (p1 * x - p2 * x)) + p2 * x


saved = []
with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
    acon(x)
seen = {}
for t in saved:
    seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
saved_bytes = sum(seen.values())
del saved

fwd, bwd = [], []
for _ in range(4):
    t0 = time.perf_counter()
    y = acon(x)
    t1 = time.perf_counter()
    y.backward(g)
    t2 = time.perf_counter()
    fwd.append(t1 - t0)
    bwd.append(t2 - t1)
    x.grad = p1.grad = p2.grad = beta.grad = None
f, b = statistics.median(fwd), statistics.median(bwd)
print(f"torch {torch.__version__} ACON-C reference expression on {list(shape)}, 2 threads")
print(f"forward {f * 1e3:.1f} ms, backward {b * 1e3:.1f} ms, total {(f + b) * 1e3:.1f} ms")
print(f"saved for backward: {saved_bytes} bytes ({saved_bytes / x.numel() / 4:.2f}x the input)")
print(f'{{"forward_seconds": {f}, "backward_seconds": {b}, "saved_bytes": {saved_bytes}}}')
