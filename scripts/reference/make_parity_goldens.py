"""Whole-model parity goldens for the Swift model zoo, from the PyTorch reference in
acon_reference.py: ShuffleNetV2 0.5x with ACON-C, with meta-ACON, and TFNet-0.5, 10 classes,
a batch of 4 inputs of 3x48x48 (odd
spatial sizes 3 -> 2 in the last stage exercise padding; batch 4, not 2, because BN over two
values inside meta-ACON's generator is ill-conditioned: PyTorch's own float32 logits then differ
from float64 by 1e-2).

Run: /opt/torchvenv/bin/python scripts/reference/make_parity_goldens.py
Writes, for each TAG in shufflenetv2_0.5x_acon, shufflenetv2_0.5x_meta, tfnet_0.5, into
Tests/ACONModelsTests/Golden/:

  TAG.weights.safetensors  the model's state_dict (float32; num_batches_tracked int64, shape []),
                           loadable as is (Module.load(from:)). BN running statistics are not the
                           initial 0/1: two no-grad training-mode passes on other data ran first.
  TAG.io.safetensors       with these weights:
    input [4,3,48,48], labels [4] (int64)
    logits_eval, logits_eval_f64        eval mode (running statistics)
    logits_train, logits_train_f64      training mode (batch statistics)
    loss, loss_f64                      mean cross-entropy of logits_train, label smoothing 0.1
    grad.NAME                           d loss / d parameter NAME, float32 (torch CPU)
    grad_f64.NAME                       the same in float64
    grad_norm_f64.NAME                  the float64 L2 norm of the whole gradient, shape []
    after.NAME                          BN running_mean / running_var after the training-mode
                                        pass (momentum 0.1, unbiased variance); every
                                        num_batches_tracked is then its stored value + 1
  Parameters whose true gradient is zero (a conv bias or BN shift followed, through linear
  layers only, by a training-mode BN) have no grad./grad_f64. entries, only grad_norm_f64 (about
  1e-12 of the total) and their names in the metadata entry zero_gradient_parameters: check
  them with an absolute bound, since a relative error of float32 noise means nothing.
  Large gradients are stored by their leading rows only (dim 0), to keep the files small: grad.NAME
  holds the first k rows, k = max(1, 768 // row_size) (all rows when the tensor has at most 768
  elements); grad_f64.NAME likewise with 128. Compare the same leading rows of the Swift gradient
  (Golden.mismatch(..., leadingRows: true)) and the whole gradient through grad_norm_f64.
The float64 values come from a float64 copy of the same model (same float32 weights, exact in
float64) on the same input: the error report compares Swift and PyTorch float32 to them.
"""
import copy
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "golden"))

from acon_reference import ShuffleNetV2, TFNet  # noqa: E402
from common import Golden, golden_path  # noqa: E402

CLASSES = 10
BATCH, SIZE = 4, 48
SMOOTHING = 0.1
# A parameter whose float64 gradient norm is below this fraction of the whole gradient's norm
# has a zero true gradient (a conv bias right before a training-mode BN): relative errors
# mean nothing for it; compare it with an absolute bound instead.
ZERO_GRADIENT = 1e-9
GRAD_ROWS_ELEMENTS = 768
GRAD_F64_ROWS_ELEMENTS = 128


def leading_rows(t, limit):
    if t.dim() == 0 or t.numel() <= limit:
        return t
    row = t[0].numel()
    return t[: max(1, limit // row)]


def make(tag, build, seed):
    g_w = Golden(seed)  # seeds torch
    model = build()
    # Non-trivial running statistics: two training-mode passes on other data, no gradients.
    model.train()
    with torch.no_grad():
        for scale, shift in [(2.0, 0.5), (0.5, -0.3)]:
            model(torch.randn(BATCH, 3, SIZE, SIZE) * scale + shift)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for k, v in state.items():
        if v.dtype == torch.int64:
            g_w.i64(k, v)
        else:
            g_w.f32(k, v)
    meta = dict(tag=tag, classes=CLASSES, input=f"{BATCH}x3x{SIZE}x{SIZE}")
    g_w.save(golden_path("ACONModelsTests", tag + ".weights"), **meta)

    x = torch.randn(BATCH, 3, SIZE, SIZE)
    labels = torch.randint(0, CLASSES, (BATCH,))
    model64 = copy.deepcopy(model).double()

    g = Golden(seed)
    g.f32("input", x)
    g.i64("labels", labels)

    outputs = {}
    for name, m, xx in [("f32", model, x), ("f64", model64, x.double())]:
        m.eval()
        with torch.no_grad():
            logits_eval = m(xx)
        m.train()
        logits_train = m(xx)
        loss = F.cross_entropy(logits_train, labels, label_smoothing=SMOOTHING)
        m.zero_grad()
        loss.backward()
        outputs[name] = (logits_eval, logits_train, loss, dict(m.named_parameters()))

    e32, t32, l32, p32 = outputs["f32"]
    e64, t64, l64, p64 = outputs["f64"]
    g.f32("logits_eval", e32)
    g.f64("logits_eval_f64", e64)
    g.f32("logits_train", t32)
    g.f64("logits_train_f64", t64)
    g.f32("loss", l32)
    g.f64("loss_f64", l64)
    worst = (0.0, "")
    zero = []
    total_norm = torch.stack([p.grad.norm() for p in p64.values()]).norm()
    for k, p in p32.items():
        g32, g64 = p.grad, p64[k].grad
        g.f64("grad_norm_f64." + k, g64.norm())
        if g64.norm() < ZERO_GRADIENT * total_norm:
            zero.append(k)
            continue
        g.f32("grad." + k, leading_rows(g32, GRAD_ROWS_ELEMENTS))
        g.f64("grad_f64." + k, leading_rows(g64, GRAD_F64_ROWS_ELEMENTS))
        err = ((g32.double() - g64).norm() / g64.norm()).item()
        worst = max(worst, (err, k))
    for k, b in model.named_buffers():
        if b.dtype != torch.int64:  # num_batches_tracked: the stored value + 1
            g.f32("after." + k, b)

    def rel(a, b):
        return ((a.double() - b).norm() / b.norm()).item()

    report = dict(
        torch_f32_rel_err_logits_eval=f"{rel(e32, e64):.3e}",
        torch_f32_rel_err_logits_train=f"{rel(t32, t64):.3e}",
        torch_f32_rel_err_loss=f"{abs(l32.item() - l64.item()) / abs(l64.item()):.3e}",
        torch_f32_worst_grad_rel_err=f"{worst[0]:.3e} ({worst[1]})",
        zero_gradient_parameters=",".join(zero),
    )
    print(tag, report)
    g.save(golden_path("ACONModelsTests", tag + ".io"), label_smoothing=SMOOTHING, **meta, **report)


if __name__ == "__main__":
    make("shufflenetv2_0.5x_acon", lambda: ShuffleNetV2("0.5x", CLASSES, act="acon"), seed=1)
    make("shufflenetv2_0.5x_meta", lambda: ShuffleNetV2("0.5x", CLASSES, act="meta"), seed=2)
    make("tfnet_0.5", lambda: TFNet(0.5, CLASSES), seed=3)
    folder = os.path.dirname(golden_path("ACONModelsTests", "x"))
    total = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"total {total / 1e6:.2f} MB in {folder}")
