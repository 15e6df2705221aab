"""Golden values for the ACON family (Tests/ACONNNTests/Golden/acon.safetensors).

Run with /opt/torchvenv/bin/python scripts/golden/acon.py. The modules below restate the
reference definitions (github.com/nmaac/acon: acon.py, TFNet/network.py) in their own words;
the Swift tests load the same parameters, run forward in training mode, back-propagate the
stored upstream gradient and compare outputs, gradients and BN running statistics.
"""
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

torch.manual_seed(0)
out = {}


def acon_c(x, p1, p2, beta, hard=False):
    gate = F.hardsigmoid if hard else torch.sigmoid
    return (p1 * x - p2 * x) * gate(beta * (p1 * x - p2 * x)) + p2 * x


def record_function(prefix, x, params, hard=False):
    x = x.clone().requires_grad_(True)
    params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    y = acon_c(x, params["p1"], params["p2"], params["beta"], hard)
    g = torch.randn_like(y)
    y.backward(g)
    out[f"{prefix}.x"] = x.detach()
    out[f"{prefix}.g"] = g
    out[f"{prefix}.y"] = y.detach()
    out[f"{prefix}.grad.x"] = x.grad
    for k, v in params.items():
        out[f"{prefix}.param.{k}"] = v.detach()
        out[f"{prefix}.grad.{k}"] = v.grad


# ACON-C on [N, C, H, W] (beta away from 1 so that its gradient matters) and on [N, C].
c = 6
record_function(
    "aconc",
    torch.randn(3, c, 5, 7) * 2,
    {"p1": torch.randn(1, c, 1, 1), "p2": torch.randn(1, c, 1, 1),
     "beta": torch.rand(1, c, 1, 1) * 2 + 0.2},
)
record_function(
    "aconc2d",
    torch.randn(5, 11) * 2,
    {"p1": torch.randn(1, 11), "p2": torch.randn(1, 11), "beta": torch.rand(1, 11) * 2 + 0.2},
)
record_function(
    "aconchard",
    torch.randn(3, c, 5, 7) * 4,
    {"p1": torch.randn(1, c, 1, 1), "p2": torch.randn(1, c, 1, 1),
     "beta": torch.rand(1, c, 1, 1) * 2 + 0.2},
    hard=True,
)


class MetaAconC(nn.Module):
    """The reference channel-wise meta-ACON: beta = sigmoid(bn2(fc2(bn1(fc1(mean_hw(x))))))."""

    def __init__(self, width, r=16):
        super().__init__()
        hidden = max(r, width // r)
        self.fc1 = nn.Conv2d(width, hidden, kernel_size=1, stride=1, bias=True)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, width, kernel_size=1, stride=1, bias=True)
        self.bn2 = nn.BatchNorm2d(width)
        self.p1 = nn.Parameter(torch.randn(1, width, 1, 1))
        self.p2 = nn.Parameter(torch.randn(1, width, 1, 1))

    def forward(self, x):
        pooled = x.mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)
        beta = torch.sigmoid(self.bn2(self.fc2(self.bn1(self.fc1(pooled)))))
        return acon_c(x, self.p1, self.p2, beta)


class AconFReLU(nn.Module):
    """The reference TFNet Acon_FReLU."""

    def __init__(self, width, stride=1):
        super().__init__()
        self.stride = stride
        self.conv_frelu = nn.Conv2d(width, width, 3, stride, 1, groups=width, bias=True)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x):
        x1 = self.maxpool(x) if self.stride == 2 else x
        x2 = self.bn1(self.conv_frelu(x))
        d = x1 - x2
        return self.bn2(d * torch.sigmoid(d) + x2)


def record_module(prefix, module, x):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight") and name.startswith("bn"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.startswith("bn"):
                p.copy_(0.2 * torch.randn_like(p))
            elif name.startswith("conv_frelu.weight"):
                p.copy_(0.5 * torch.randn_like(p))
    for name, p in module.named_parameters():
        out[f"{prefix}.param.{name}"] = p.detach().clone()
    module.train()
    x = x.clone().requires_grad_(True)
    y = module(x)
    g = torch.randn_like(y)
    y.backward(g)
    out[f"{prefix}.x"] = x.detach()
    out[f"{prefix}.g"] = g
    out[f"{prefix}.y"] = y.detach()
    out[f"{prefix}.grad.x"] = x.grad
    for name, p in module.named_parameters():
        out[f"{prefix}.grad.{name}"] = p.grad
    for name, b in module.named_buffers():
        if b.dtype.is_floating_point:
            out[f"{prefix}.buffer.{name}"] = b.detach().clone()


record_module("meta", MetaAconC(32), torch.randn(4, 32, 5, 6) * 1.5)
record_module("frelu", AconFReLU(4), torch.randn(2, 4, 6, 7))
record_module("frelu2", AconFReLU(4, stride=2), torch.randn(2, 4, 7, 6))

path = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "ACONNNTests", "Golden",
                    "acon.safetensors")
out = {k: v.contiguous().float() for k, v in out.items()}
save_file(out, path, metadata={"generator": "scripts/golden/acon.py", "torch": torch.__version__})
print(f"wrote {len(out)} tensors, {os.path.getsize(path)} bytes to {os.path.normpath(path)}")
