"""Goldens for batch norm (training step, running statistics after two steps, evaluation,
gradients; rank 4 and rank 2) and 3x3 stride 2 padding 1 max and average pooling (values and
gradients), float32 (torch CPU).

Gradients are those of sum(y * r) for the stored projection r, so every output element
contributes to every checked gradient.

Run: /opt/torchvenv/bin/python scripts/golden/normalization.py
Writes Tests/ACONTensorTests/Golden/normalization.safetensors; NormalizationTests.swift and
PoolingTests.swift read it.
"""
import torch
import torch.nn.functional as F

from common import Golden, golden_path

g = Golden(seed=0)
# Names to tensors, stored through `g` at the end (in insertion order).
out = {}


def grads(y, r, *inputs):
    return torch.autograd.grad((y * r).sum(), inputs)


def batch_norm_case(prefix, shape, shift):
    c = shape[1]
    x1 = torch.randn(shape) * 2 + shift
    x2 = torch.randn(shape) * 0.5 - shift
    w = torch.randn(c)
    b = torch.randn(c)
    bn = torch.nn.BatchNorm2d(c) if len(shape) == 4 else torch.nn.BatchNorm1d(c)
    with torch.no_grad():
        bn.weight.copy_(w)
        bn.bias.copy_(b)
    bn.train()
    x1r = x1.clone().requires_grad_(True)
    y1 = bn(x1r)
    r = torch.randn(shape)
    dx, dw, db = grads(y1, r, x1r, bn.weight, bn.bias)
    out[prefix + "x1"] = x1
    out[prefix + "x2"] = x2
    out[prefix + "weight"] = w
    out[prefix + "bias"] = b
    out[prefix + "r"] = r
    out[prefix + "train_y"] = y1.detach()
    out[prefix + "train_dx"] = dx
    out[prefix + "train_dweight"] = dw
    out[prefix + "train_dbias"] = db
    out[prefix + "running_mean_1"] = bn.running_mean.clone()
    out[prefix + "running_var_1"] = bn.running_var.clone()
    bn(x2)
    out[prefix + "running_mean_2"] = bn.running_mean.clone()
    out[prefix + "running_var_2"] = bn.running_var.clone()
    bn.eval()
    x1e = x1.clone().requires_grad_(True)
    ye = bn(x1e)
    dx, dw, db = grads(ye, r, x1e, bn.weight, bn.bias)
    out[prefix + "eval_y"] = ye.detach()
    out[prefix + "eval_dx"] = dx
    out[prefix + "eval_dweight"] = dw
    out[prefix + "eval_dbias"] = db


def pool_case(prefix, shape):
    # Distinct values, so the max-pool gradient has no ties.
    x = (torch.randperm(torch.Size(shape).numel()).float() / 10 - 5).reshape(shape)
    for kind, fn in (("max", F.max_pool2d), ("avg", F.avg_pool2d)):
        xr = x.clone().requires_grad_(True)
        y = fn(xr, kernel_size=3, stride=2, padding=1)
        r = torch.randn(y.shape)
        (dx,) = grads(y, r, xr)
        out[f"{prefix}{kind}_r"] = r
        out[f"{prefix}{kind}_y"] = y.detach()
        out[f"{prefix}{kind}_dx"] = dx
    out[prefix + "x"] = x


batch_norm_case("bn4_", (4, 3, 5, 5), 3.0)
batch_norm_case("bn2_", (6, 4), -1.0)
pool_case("pool9_", (2, 3, 9, 9))
pool_case("pool8_", (1, 2, 8, 8))
pool_case("poolwide_", (1, 2, 6, 37))  # wide enough for the eight-lane paths

for name, value in out.items():
    g.f32(name, value)
g.save(golden_path("ACONTensorTests", "normalization"))
