"""Goldens for the tensor ops that exist in ACONTensor: linear, broadcast add and multiply,
relu, sigmoid, cross-entropy with label smoothing 0.1 (and 0, and large logits), and the
ShuffleNetV2 channel split by parity. Values and gradients, float32 (torch CPU).

Gradients are those of sum(out * r) for a stored random projection r (`<op>.proj`), so every
output element contributes to every checked gradient.

Run: /opt/torchvenv/bin/python scripts/golden/basic_ops.py
Writes Tests/ACONTensorTests/Golden/basic_ops.safetensors; GoldenOpsTests.swift reads it.
"""
import torch
import torch.nn.functional as F

from common import Golden, golden_path, projected_backward

g = Golden(seed=20210301)


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_(True)


# linear: x [4, 6], W [5, 6], b [5]
x, w, b = leaf(4, 6), leaf(5, 6), leaf(5)
y = F.linear(x, w, b)
r, (dx, dw, db) = projected_backward(y, x, w, b)
for k, v in [("x", x), ("weight", w), ("bias", b), ("out", y), ("proj", r),
             ("grad_x", dx), ("grad_weight", dw), ("grad_bias", db)]:
    g.f32("linear." + k, v)

# broadcast add: a [2, 3, 4, 5] + c [2, 1, 4, 1]
a, c = leaf(2, 3, 4, 5), leaf(2, 1, 4, 1)
y = a + c
r, (da, dc) = projected_backward(y, a, c)
for k, v in [("a", a), ("b", c), ("out", y), ("proj", r), ("grad_a", da), ("grad_b", dc)]:
    g.f32("add." + k, v)

# broadcast multiply: a [2, 3, 4, 5] * s [1, 3, 1, 1] (a per-channel scale, as p1 in ACON)
a, s = leaf(2, 3, 4, 5), leaf(1, 3, 1, 1)
y = a * s
r, (da, ds) = projected_backward(y, a, s)
for k, v in [("a", a), ("b", s), ("out", y), ("proj", r), ("grad_a", da), ("grad_b", ds)]:
    g.f32("multiply." + k, v)

# relu and sigmoid on [3, 7, 5]; inputs kept away from relu's kink at 0
x = torch.randn(3, 7, 5)
x = torch.where(x.abs() < 1e-3, torch.full_like(x, 0.5), x).requires_grad_(True)
for name, fn in [("relu", torch.relu), ("sigmoid", torch.sigmoid)]:
    y = fn(x)
    r, (dx,) = projected_backward(y, x)
    for k, v in [("x", x), ("out", y), ("proj", r), ("grad_x", dx)]:
        g.f32(name + "." + k, v)

# cross-entropy, mean over the batch: [6, 10] logits; label smoothing 0.1 and 0;
# and logits scaled by 30 to exercise the max shift.
labels = torch.tensor([0, 3, 9, 3, 5, 1])
for name, scale, eps in [("ce_ls", 1.0, 0.1), ("ce", 1.0, 0.0), ("ce_large", 30.0, 0.1)]:
    z = leaf(6, 10, scale=scale)
    loss = F.cross_entropy(z, labels, label_smoothing=eps)
    (dz,) = torch.autograd.grad(loss, z)
    g.f32(name + ".logits", z)
    g.f32(name + ".loss", loss)
    g.f32(name + ".grad_logits", dz)
    # float64 reference of the same loss, for the error report
    g.f64(name + ".loss_f64", F.cross_entropy(z.double(), labels, label_smoothing=eps))
g.i64("ce.labels", labels)

# ShuffleNetV2 channel split by parity: x [N, C, H, W] = [2, 8, 3, 3]
x = leaf(2, 8, 3, 3)
n, ch, h, wd = x.shape
t = x.reshape(n * ch // 2, 2, h * wd).permute(1, 0, 2)
t = t.reshape(2, -1, ch // 2, h, wd)
even, odd = t[0], t[1]
r_even = torch.randn(even.shape)
r_odd = torch.randn(odd.shape)
(dx,) = torch.autograd.grad((even * r_even).sum() + (odd * r_odd).sum(), x)
for k, v in [("x", x), ("even", even), ("odd", odd), ("proj_even", r_even), ("proj_odd", r_odd),
             ("grad_x", dx)]:
    g.f32("split." + k, v)

g.save(golden_path("ACONTensorTests", "basic_ops"))
