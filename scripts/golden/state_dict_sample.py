"""Writes Tests/ACONNNTests/Golden/state_dict_sample.safetensors: the state_dict of a tiny
PyTorch network (conv, BN, ReLU, linear) after three training-mode forward passes, so that
BN's running statistics are non-trivial and num_batches_tracked is 3 (I64, shape []).

Also writes state_dict_sample_io.safetensors: an input and the network's outputs with these
weights (eval mode, then training mode, which also moves the running statistics), so a Swift
network built from the real layers and loaded from the file can be checked end to end.

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

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


torch.manual_seed(0)
model = Tiny()
for _ in range(3):
    model.features(torch.randn(2, 3, 5, 5))
state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, OUT, metadata={"arch": "tiny", "torch": torch.__version__})
for k, v in state.items():
    print(k, v.dtype, list(v.shape))
print(OUT, os.path.getsize(OUT), "bytes")

x = torch.randn(2, 3, 5, 5)
model.eval()
with torch.no_grad():
    out_eval = model(x)
model.train()
with torch.no_grad():
    out_train = model(x)
io = {"input": x, "out_eval": out_eval, "out_train": out_train,
      "after.running_mean": model.features[1].running_mean.clone(),
      "after.running_var": model.features[1].running_var.clone()}
OUT_IO = OUT.replace("state_dict_sample", "state_dict_sample_io")
save_file({k: v.contiguous() for k, v in io.items()}, OUT_IO)
print(OUT_IO, os.path.getsize(OUT_IO), "bytes")
