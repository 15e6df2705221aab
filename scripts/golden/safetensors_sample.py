"""Writes Tests/ACONTensorTests/Golden/safetensors_sample.safetensors with the Python
`safetensors` package, so the Swift reader is tested on a file it did not write.

Run: /opt/torchvenv/bin/python scripts/golden/safetensors_sample.py
The values are exact in every dtype; SafeTensorsTests.swift checks them literally.
"""
import os

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "ACONTensorTests", "Golden", "safetensors_sample.safetensors")

tensors = {
    # F32, 2x3: -1, -0.5, 0, 0.5, 1, 1.5
    "conv.weight": (torch.arange(6, dtype=torch.float32) * 0.5 - 1).reshape(2, 3),
    # F64 with a value that is not exact in float32 (reads rounded to nearest float32)
    "f64": torch.tensor([0.1, -2.5, 1e10], dtype=torch.float64),
    # F16: normal, negative, largest finite, smallest subnormal (2^-24)
    "f16": torch.tensor([0.5, -2.0, 65504.0, 2.0 ** -24], dtype=torch.float16),
    # BF16: values exact in bfloat16
    "bf16": torch.tensor([1.5, -3.0, 2.0 ** 100], dtype=torch.bfloat16),
    # I64 scalar, as BatchNorm's num_batches_tracked
    "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    "i32": torch.tensor([[-3, 4], [5, -6]], dtype=torch.int32),
    "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
    "i8": torch.tensor([-128, 127], dtype=torch.int8),
    "bool": torch.tensor([True, False, True]),
    "empty": torch.zeros(0, 4, dtype=torch.float32),
}
save_file(tensors, OUT, metadata={"format": "pt", "note": "ACON safetensors sample"})
print(OUT, os.path.getsize(OUT), "bytes")
