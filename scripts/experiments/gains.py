#!/usr/bin/env python3
"""The paper-style tables of docs/RESULTS.md, from the tables reproduce.sh wrote
(runs/reproduce/table-*.md):

1. test error (mean ± std over seeds) per model and activation, in the form of the paper's
   table 3, models from the smallest to the largest;
2. gain against model size: for each model its parameter count (the relu row) and, for every
   other activation, the change in mean test error against ReLU with its standard error,
   sqrt(s_a^2 / n_a + s_b^2 / n_b) from the per-seed errors, so a reader can see which gains are
   larger than the seed-to-seed noise.

    python3 scripts/experiments/gains.py [runs/reproduce]
"""
import math
import os
import sys


def read_table(path):
    """Rows of an `acon compare` table: name -> (params, [per-seed test errors in %])."""
    rows, title = {}, None
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or cells[0].startswith("---"):
            continue
        if title is None:
            title = cells[0]
            continue
        rows[cells[0]] = (cells[1], [float(v) for v in cells[4].split(",")])
    return title, rows


def stats(values):
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, var, n


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "runs/reproduce"
    models = ["shufflenetv2-0.25x", "mobilenetv1-0.25", "shufflenetv2-0.5x", "resnet18"]
    activations = ["swish", "acon-a", "acon-b", "acon-c", "meta-acon"]
    tables = {}
    for model in models:
        path = os.path.join(root, f"table-{model}.md")
        if os.path.exists(path):
            rows = read_table(path)[1]
            if rows:  # a table still being written is empty
                tables[model] = rows
    print("| model | params (ReLU) | " + " | ".join(["relu"] + activations) + " |")
    print("|---|---|" + "---|" * (len(activations) + 1))
    for model, rows in tables.items():
        cells = []
        for a in ["relu"] + activations:
            if a in rows:
                m, v, _ = stats(rows[a][1])
                cells.append(f"{m:.2f} ± {math.sqrt(v):.2f}")
            else:
                cells.append("-")
        print(f"| {model} | {rows.get('relu', ('-',))[0]} | " + " | ".join(cells) + " |")
    print()
    print("| model | params | ReLU error % | " + " | ".join(f"{a} vs ReLU" for a in activations) + " |")
    print("|---|---|---|" + "---|" * len(activations))
    for model in models:
        path = os.path.join(root, f"table-{model}.md")
        if not os.path.exists(path):
            continue
        _, rows = read_table(path)
        if "relu" not in rows:
            continue
        params, base = rows["relu"]
        bm, bv, bn = stats(base)
        cells = []
        for a in activations:
            if a not in rows:
                cells.append("-")
                continue
            m, v, n = stats(rows[a][1])
            se = math.sqrt(bv / bn + v / n)
            cells.append(f"{m - bm:+.2f} ± {se:.2f}")
        print(f"| {model} | {params} | {bm:.2f} | " + " | ".join(cells) + " |")
    print()
    print("Negative is better (lower error than ReLU); ± is the standard error of the difference.")


if __name__ == "__main__":
    main()
