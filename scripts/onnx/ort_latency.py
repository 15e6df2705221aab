"""Batch-1 latency of an ONNX file under onnxruntime (CPU), for comparison with `acon bench
--mode infer --batch-size 1` on the same machine.

Usage: .venv-onnx/bin/python scripts/onnx/ort_latency.py M.onnx [--steps 50] [--warmup 10] [--threads 2]
Prints the median step in milliseconds (and JSON with --json).
"""
import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(args.warmup):
        session.run(None, {"input": x})
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        session.run(None, {"input": x})
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"onnxruntime {ort.__version__}: median {median * 1e3:.2f} ms over {args.steps} steps, {args.threads} threads")
    if args.json:
        print(json.dumps({"step_seconds_median": median}))


if __name__ == "__main__":
    main()
