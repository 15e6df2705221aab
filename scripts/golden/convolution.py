"""Goldens for Tensor.conv2d against F.conv2d: the general path (3x3 stride 1 and 2 with
padding, dilation 2, groups 2, a 2x3 kernel, a stride-2 stem), 1x1 (in place and batched
across images, and stride 2), depthwise 3x3 at stride 1 and 2, and Winograd's 3x3 stride 1
(16+ channels, padding 0, 1, 2); values and gradients,
float32 (torch CPU).

Each case `<name>` stores x, weight, bias (when used), out, proj and grad_x, grad_weight,
grad_bias: the gradients of sum(out * proj). `<name>.params` holds
[stride, padding, dilation, groups] as int64, so the Swift test reads its cases from the file.

Run: /opt/torchvenv/bin/python scripts/golden/convolution.py
Writes Tests/ACONTensorTests/Golden/convolution.safetensors; ConvolutionTests.swift reads it.
"""
import torch
import torch.nn.functional as F

from common import Golden, golden_path, projected_backward

g = Golden(seed=20210302)

# name, x shape, weight shape, bias, stride, padding, dilation, groups
CASES = [
    ("conv3x3", (2, 3, 7, 6), (4, 3, 3, 3), True, 1, 1, 1, 1),
    ("conv3x3_s2", (2, 3, 9, 9), (5, 3, 3, 3), False, 2, 1, 1, 1),
    ("dilated", (1, 2, 10, 10), (3, 2, 3, 3), True, 1, 2, 2, 1),
    ("grouped", (2, 4, 6, 6), (6, 2, 3, 3), True, 1, 1, 1, 2),
    ("rect2x3_s2", (1, 3, 7, 8), (2, 3, 2, 3), True, 2, 1, 1, 1),
    ("stem_s2", (2, 3, 16, 16), (8, 3, 3, 3), False, 2, 1, 1, 1),
    ("pointwise", (2, 8, 5, 5), (6, 8, 1, 1), True, 1, 0, 1, 1),
    ("pointwise_batched", (4, 16, 7, 7), (24, 16, 1, 1), False, 1, 0, 1, 1),
    ("pointwise_s2", (2, 4, 7, 7), (3, 4, 1, 1), False, 2, 0, 1, 1),
    ("depthwise", (2, 6, 9, 9), (6, 1, 3, 3), True, 1, 1, 1, 6),
    ("depthwise_s2", (2, 4, 9, 9), (4, 1, 3, 3), False, 2, 1, 1, 4),
    # 3x3 stride 1 with 16+ channels: the Winograd F(2x2, 3x3) path (odd sizes crop tiles).
    ("winograd", (2, 16, 7, 9), (17, 16, 3, 3), True, 1, 1, 1, 1),
    ("winograd_pad0", (1, 16, 6, 6), (16, 16, 3, 3), False, 1, 0, 1, 1),
    ("winograd_pad2", (1, 16, 5, 7), (16, 16, 3, 3), True, 1, 2, 1, 1),
]

for name, xs, ws, has_bias, stride, padding, dilation, groups in CASES:
    x = torch.randn(*xs).requires_grad_(True)
    fan_in = ws[1] * ws[2] * ws[3]
    w = (torch.randn(*ws) / fan_in ** 0.5).requires_grad_(True)
    b = torch.randn(ws[0]).requires_grad_(True) if has_bias else None
    y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    inputs = (x, w, b) if has_bias else (x, w)
    r, grads = projected_backward(y, *inputs)
    g.i64(name + ".params", [stride, padding, dilation, groups])
    g.f32(name + ".x", x)
    g.f32(name + ".weight", w)
    g.f32(name + ".out", y)
    g.f32(name + ".proj", r)
    g.f32(name + ".grad_x", grads[0])
    g.f32(name + ".grad_weight", grads[1])
    if has_bias:
        g.f32(name + ".bias", b)
        g.f32(name + ".grad_bias", grads[2])

size = g.save(golden_path("ACONTensorTests", "convolution"), cases=" ".join(c[0] for c in CASES))
assert size < 300_000, size
