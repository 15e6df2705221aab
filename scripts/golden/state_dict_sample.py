"""Writes Tests/ACONNNTests/Golden/state_dict_sample.safetensors: the state_dict of a tiny
PyTorch network (conv, BN, ReLU, linear) after three training-mode forward passes, so that
BN's running statistics are non-trivial and num_batches_tracked is 3 (I64, shape []).

Run: /opt/torchvenv/bin/python scripts/golden/state_dict_sample.py
StateDictTests.swift loads it into a Swift module tree with the same names.
"""
import os

import torch
from torch import nn
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "ACONNNTests", "Golden", "state_dict_sample.safetensors")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(4, 2))


torch.manual_seed(0)
model = Tiny()
for _ in range(3):
    model.features(torch.randn(2, 3, 5, 5))
state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, OUT, metadata={"arch": "tiny", "torch": torch.__version__})
for k, v in state.items():
    print(k, v.dtype, list(v.shape))
print(OUT, os.path.getsize(OUT), "bytes")
