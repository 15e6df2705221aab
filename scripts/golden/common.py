"""Helpers shared by the golden-file scripts: collect tensors, save them as safetensors with
metadata that records how they were made.

Every script seeds torch itself (torch.manual_seed) and runs on the CPU, single-threaded, so
that the values do not depend on the machine's thread count.
"""
import os
import sys

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.set_num_threads(1)


def golden_path(test_target, name):
    """Tests/<test_target>/Golden/<name>.safetensors"""
    return os.path.join(ROOT, "Tests", test_target, "Golden", name + ".safetensors")


class Golden:
    """An ordered collection of named tensors to save in one file."""

    def __init__(self, seed):
        self.seed = seed
        self.tensors = {}
        torch.manual_seed(seed)

    def _put(self, name, t):
        if name in self.tensors:
            raise KeyError(f"duplicate golden name {name}")
        self.tensors[name] = t.detach().contiguous().clone()

    def f32(self, name, t):
        """Stores `t` as float32 (what the Swift code computes in)."""
        self._put(name, t.to(torch.float32))

    def f64(self, name, t):
        """Stores `t` as float64 (a high-precision reference for error reports)."""
        self._put(name, t.to(torch.float64))

    def i64(self, name, t):
        """Stores integer data (labels, counters) as int64."""
        self._put(name, torch.as_tensor(t).to(torch.int64))

    def save(self, path, **metadata):
        meta = {
            "script": os.path.relpath(os.path.abspath(sys.argv[0]), ROOT),
            "torch": torch.__version__,
            "seed": str(self.seed),
        }
        meta.update({k: str(v) for k, v in metadata.items()})
        save_file(self.tensors, path, metadata=meta)
        size = os.path.getsize(path)
        print(f"{os.path.relpath(path, ROOT)}: {len(self.tensors)} tensors, {size} bytes")
        return size


def projected_backward(output, *inputs, generator=None):
    """Gradients of sum(output * r) for a fixed random r with respect to `inputs`; returns
    (r, grads). Every output element then contributes to the checked gradient."""
    r = torch.randn(output.shape, dtype=output.dtype, generator=generator)
    grads = torch.autograd.grad((output * r).sum(), inputs)
    return r, grads
