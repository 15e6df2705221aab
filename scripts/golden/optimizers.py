"""Reference trajectories for the optimizer tests (Tests/ACONTrainingTests/OptimizerTests.swift).

Run: /opt/torchvenv/bin/python scripts/golden/optimizers.py
Prints the parameter after three steps of SGD (momentum 0.9, weight decay 0.1), Adam (L2 0.1) and
AdamW (0.1) with learning rates 0.1, 0.05, 0.02, on the gradient g(p) = p^3 - 1 (elementwise).
"""
import torch

start = [0.5, -1.0, 2.0, 0.0]
rates = [0.1, 0.05, 0.02]


def run(make):
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = make([p])
    for lr in rates:
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        p.grad = p.detach() ** 3 - 1
        opt.step()
    return [round(v, 7) for v in p.detach().tolist()]


print("sgd", run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1)))
print("adam", run(lambda ps: torch.optim.Adam(ps, lr=0.1, weight_decay=0.1)))
print("adamw", run(lambda ps: torch.optim.AdamW(ps, lr=0.1, weight_decay=0.1)))
