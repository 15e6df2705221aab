#!/usr/bin/env python3
"""The initialisation-study table of docs/RESULTS.md, from the runs init_study.sh wrote
(runs/init-study*/<activation>-<init>-s<seed>/, finished runs: those with a `done` file): the
last metrics.jsonl line's test top-1 error (%) per
activation and initialisation, mean ± sample std over the seeds that finished, the per-seed
values, the change against ReLU under the same initialisation, and the change the PyTorch
initialisation brings per activation, each with its standard error
sqrt(s_a^2 / n_a + s_b^2 / n_b) (0 where a cell has one seed).

    python3 scripts/experiments/init_table.py [runs/init-study]
    python3 scripts/experiments/init_table.py --per-epoch runs/long-10ep

`--per-epoch` prints, instead, each finished run's test error after every epoch (the curves in
numbers), with its best epoch, the train loss of the last epoch and the images per second, and,
where a cell has several seeds, the mean over them after every epoch.
"""
import glob
import json
import math
import os
import re
import sys

# Table order of the activations; others follow, sorted.
ORDER = ["relu", "swish", "acon-a", "acon-b", "acon-c", "meta-acon"]


def load(root):
    cells = {}
    for path in sorted(glob.glob(os.path.join(root, "*-s*", "metrics.jsonl"))):
        m = re.match(r"(.+?)-((?:reference|pytorch)(?:\+(?:reference|pytorch)-generators)?)-s(\d+)$",
                     os.path.basename(os.path.dirname(path)))
        if not m:
            continue
        if not os.path.exists(os.path.join(os.path.dirname(path), "done")):
            continue  # unfinished
        lines = [json.loads(l) for l in open(path) if l.strip()]
        last = lines[-1]
        # Each line times its own epoch: a run's training time is their sum.
        seconds = sum(l["seconds"] for l in lines)
        cells.setdefault((m.group(1), m.group(2)), []).append(
            (int(m.group(3)), 100 * (1 - last["test_top1"]), 100 * last["train_top1"], seconds,
             last["iteration"], last["epoch"]))
    return cells


def stats(values):
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, var, n


def diff(a, b):
    (ma, va, na), (mb, vb, nb) = stats(a), stats(b)
    return ma - mb, math.sqrt(va / na + vb / nb)


def per_epoch(root):
    rows = []
    for path in sorted(glob.glob(os.path.join(root, "*-s*", "metrics.jsonl"))):
        if not os.path.exists(os.path.join(os.path.dirname(path), "done")):
            continue
        lines = [json.loads(l) for l in open(path) if l.strip()]
        rows.append((os.path.basename(os.path.dirname(path)), lines))
    if not rows:
        print(f"no finished runs under {root}")
        return
    rank = lambda name: next((i for i, a in enumerate(ORDER) if name.startswith(a + "-")), len(ORDER))
    rows.sort(key=lambda r: (rank(r[0]), r[0]))
    epochs = max(len(lines) for _, lines in rows)
    print("Test top-1 error % after each epoch (the last epoch's is the final model's):\n")
    print("| run | " + " | ".join(str(e) for e in range(1, epochs + 1))
          + " | best (epoch) | last train loss | images/s | hours |")
    print("|---|" + "---|" * (epochs + 4))
    groups = {}  # cell (the run's name without its seed) -> each seed's errors per epoch
    for name, lines in rows:
        errors = [100 * (1 - l["test_top1"]) for l in lines]
        groups.setdefault(re.sub(r"-s\d+$", "", name), []).append(errors)
        best = min(range(len(errors)), key=errors.__getitem__)
        cells = [f"{e:.2f}" for e in errors] + [""] * (epochs - len(errors))
        speed = sum(l["images_per_second"] for l in lines) / len(lines)
        hours = sum(l["seconds"] for l in lines) / 3600
        print(f"| {name} | " + " | ".join(cells) + f" | {errors[best]:.2f} ({best + 1}) | "
              f"{lines[-1]['train_loss']:.4f} | {speed:.0f} | {hours:.2f} |")

    # With more than one seed of a cell: the mean curve over its seeds, and the spread of the end.
    if all(len(runs) < 2 for runs in groups.values()):
        return
    print("\nMean test top-1 error % over the seeds after each epoch (runs that finished every epoch):\n")
    print("| cell | seeds | " + " | ".join(str(e) for e in range(1, epochs + 1))
          + " | last: mean ± std | last: min-max |")
    print("|---|---|" + "---|" * (epochs + 2))
    for cell, runs in groups.items():
        runs = [r for r in runs if len(r) == epochs]
        if not runs:
            continue
        means = [sum(r[e] for r in runs) / len(runs) for e in range(epochs)]
        mean, var, n = stats([r[-1] for r in runs])
        print(f"| {cell} | {n} | " + " | ".join(f"{m:.2f}" for m in means)
              + f" | {mean:.2f} ± {math.sqrt(var):.2f} | {min(r[-1] for r in runs):.2f}-"
              f"{max(r[-1] for r in runs):.2f} |")


def main():
    arguments = [a for a in sys.argv[1:] if a != "--per-epoch"]
    root = arguments[0] if arguments else "runs/init-study"
    if "--per-epoch" in sys.argv[1:]:
        per_epoch(root)
        return
    cells = load(root)
    activations = [a for a in ORDER if any(k[0] == a for k in cells)]
    activations += sorted({k[0] for k in cells} - set(activations))
    if not cells:
        print(f"no finished runs under {root}")
        return
    seconds = sum(r[3] for runs in cells.values() for r in runs)
    lengths = sorted({(r[4], r[5]) for runs in cells.values() for r in runs})
    length = ", ".join(f"{it} iterations ({ep} epoch(s) begun)" for it, ep in lengths)
    print(f"ShuffleNetV2-0.5x, Fashion-MNIST (batches from all 60,000 training images), {length}; "
          f"test top-1 error %, mean ± std over seeds ({sum(len(v) for v in cells.values())} runs, "
          f"{seconds / 3600:.1f} h of training time in all)\n")
    print("| activation | init | test error % | vs relu (same init) | train top-1 % | seeds: errors |")
    print("|---|---|---|---|---|---|")
    for a in activations:
        for init in ("reference", "pytorch"):
            runs = sorted(cells.get((a, init), []))
            if not runs:
                continue
            errors = [e for (_, e, *_) in runs]
            mean, var, n = stats(errors)
            train = sum(t for (_, _, t, *_) in runs) / n
            relu = [e for (_, e, *_) in cells.get(("relu", init), [])]
            vs = "" if a == "relu" or not relu else "{:+.2f} ± {:.2f}".format(*diff(errors, relu))
            per_seed = ", ".join(f"s{s}: {e:.2f}" for (s, e, *_) in runs)
            print(f"| {a} | {init} | {mean:.2f} ± {math.sqrt(var):.2f} | {vs} | {train:.2f} | {per_seed} |")
    both = [a for a in activations if cells.get((a, "reference")) and cells.get((a, "pytorch"))]
    if both:
        print("\nThe PyTorch initialisation against the reference's, per activation "
              "(change in test error, points; negative: PyTorch's is better):\n")
        print("| activation | pytorch - reference | seeds (reference, pytorch) |")
        print("|---|---|---|")
    for a in both:
        ref = [e for (_, e, *_) in cells.get((a, "reference"), [])]
        pt = [e for (_, e, *_) in cells.get((a, "pytorch"), [])]
        if ref and pt:
            d, se = diff(pt, ref)
            print(f"| {a} | {d:+.2f} ± {se:.2f} | {len(ref)}, {len(pt)} |")


    splits = [k for k in cells if "+" in k[1]]
    if splits:
        print("\nWhich part of the start matters: the meta-ACON generators (every module inside a "
              "`MetaAconC`) started apart from the rest of the network (`--generator-init`); test "
              "error %, mean ± std over seeds, and the change against the all-reference start:\n")
        print("| activation | rest of the network | generators | test error % | vs all-reference | seeds |")
        print("|---|---|---|---|---|---|")
        for a in sorted({k[0] for k in splits}):
            ref = [e for (_, e, *_) in cells.get((a, "reference"), [])]
            for init in ("reference", "reference+pytorch-generators", "pytorch+reference-generators",
                         "pytorch"):
                errors = [e for (_, e, *_) in cells.get((a, init), [])]
                if not errors:
                    continue
                rest, _, generators = init.partition("+")
                generators = generators.removesuffix("-generators") or rest
                mean, var, n = stats(errors)
                vs = "" if init == "reference" or not ref else "{:+.2f} ± {:.2f}".format(*diff(errors, ref))
                print(f"| {a} | {rest} | {generators} | {mean:.2f} ± {math.sqrt(var):.2f} | {vs} | {n} |")


if __name__ == "__main__":
    main()
