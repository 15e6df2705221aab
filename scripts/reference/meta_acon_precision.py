"""PyTorch float32's own error on train-mode batch norm + meta-ACON with uncentred input.

The Swift test `BatchNormACONPrecisionTests` bounds `acon`'s error against a float64 run by a
small factor of what this script prints: the same layer pair (BatchNorm2d, then the reference's
channel-wise meta-ACON with its two-BN generator), the same input statistics (mean about 100,
std about 60, as BGR 0..255 images give the first batch norm), float32 against float64, relative
error as ||a - b|| / ||b|| over the whole tensor.

    /opt/torchvenv/bin/python scripts/reference/meta_acon_precision.py
"""

import torch
import torch.nn as nn


class MetaAconC(nn.Module):
    # The reference's channel-wise meta-ACON (written from the paper's equations).
    def __init__(self, width, r=16):
        super().__init__()
        hidden = max(r, width // r)
        self.fc1 = nn.Conv2d(width, hidden, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, width, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(width)
        self.p1 = nn.Parameter(torch.randn(1, width, 1, 1))
        self.p2 = nn.Parameter(torch.randn(1, width, 1, 1))

    def forward(self, x):
        pooled = x.mean(dim=(2, 3), keepdim=True)
        beta = torch.sigmoid(self.bn2(self.fc2(self.bn1(self.fc1(pooled)))))
        d = (self.p1 - self.p2) * x
        return d * torch.sigmoid(beta * d) + self.p2 * x


def make(channels, seed):
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0, 0.5)
    return nn.Sequential(bn, MetaAconC(channels))


def relative(a, b):
    return ((a.double() - b).norm() / b.norm()).item()


def measure(batch, channels, size, seed):
    model64 = make(channels, seed).double().train()
    model32 = make(channels, seed).float().train()
    g = torch.Generator().manual_seed(1000 + seed)
    x = 100 + 60 * torch.randn(batch, channels, size, size, generator=g, dtype=torch.float64)
    upstream = torch.randn(batch, channels, size, size, generator=g, dtype=torch.float64)
    out = {}
    results = []
    for model, dtype in ((model64, torch.float64), (model32, torch.float32)):
        xi = x.detach().clone().to(dtype).requires_grad_()
        y = model(xi)
        (y * upstream.to(dtype)).sum().backward()
        grads = [xi.grad] + [p.grad for p in model.parameters()]
        results.append((y.detach(), grads))
    (y64, g64), (y32, g32) = results
    out["y"] = relative(y32, y64)
    out["dx"] = relative(g32[0], g64[0])
    flat64 = torch.cat([t.flatten() for t in g64[1:]])
    flat32 = torch.cat([t.flatten() for t in g32[1:]])
    out["dparams"] = relative(flat32, flat64)
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    for batch in (4, 16):
        rows = [measure(batch, 16, 112, seed) for seed in range(5)]
        for key in ("y", "dx", "dparams"):
            values = [r[key] for r in rows]
            print(f"batch {batch:2d} {key:8s} median {sorted(values)[2]:.2e} max {max(values):.2e}")
