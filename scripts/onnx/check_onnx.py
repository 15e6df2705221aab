"""Checks ONNX files exported by `acon export` against `acon`'s own eval-mode outputs.

Usage: .venv-onnx/bin/python scripts/onnx/check_onnx.py DIR [--tolerance 1e-4]

For every DIR/<case>.onnx with a DIR/<case>.io.safetensors beside it (F32 tensors `input` and
`logits`, the latter computed by acon in eval mode): runs onnx.checker.check_model(full_check=True),
then onnxruntime on `input`, and compares with `logits`: max |ort - acon| / max |acon| must not
exceed the tolerance. Prints one JSON line per case and exits 1 when any case fails.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort


def read_safetensors(path):
    """The F32 tensors of a safetensors file (numpy only: the format is an 8-byte header length,
    a JSON header, then the data)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {info['dtype']}, expected F32")
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(body[begin:end], dtype="<f4").reshape(info["shape"])
    return out


def check(onnx_path, io_path, tolerance, threads):
    result = {"case": os.path.basename(onnx_path)[: -len(".onnx")]}
    try:
        model = onnx.load(onnx_path)
        onnx.checker.check_model(model, full_check=True)
        result["ir_version"] = model.ir_version
        result["opset"] = model.opset_import[0].version
        result["nodes"] = len(model.graph.node)
    except Exception as error:  # the checker's message is the result
        result.update(ok=False, error=f"onnx.checker: {error}")
        return result
    tensors = read_safetensors(io_path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"input": tensors["input"]})
    want = tensors["logits"]
    if got.shape != want.shape:
        result.update(ok=False, error=f"shape {got.shape} != {want.shape}")
        return result
    error = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-12))
    result.update(ok=error <= tolerance, relative_error=error)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("directory")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    cases = sorted(f for f in os.listdir(args.directory) if f.endswith(".onnx"))
    if not cases:
        print(json.dumps({"ok": False, "error": f"no .onnx files in {args.directory}"}))
        return 1
    failed = 0
    for name in cases:
        onnx_path = os.path.join(args.directory, name)
        result = check(onnx_path, onnx_path[: -len(".onnx")] + ".io.safetensors", args.tolerance, args.threads)
        failed += not result["ok"]
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
