"""PyTorch-made checkpoints for the Swift .pth reader (Tests/ACONInteropTests/Fixtures/).

Run: /opt/torchvenv/bin/python scripts/golden/pytorch_checkpoints.py

- small_zip.pth: {'state_dict': OrderedDict, 'epoch': 7, 'arch': 'tiny'} in the zip format
  (PyTorch >= 1.6): float32 conv/BN/linear entries with BN's int64 num_batches_tracked, a
  transposed (non-contiguous) tensor, two views of one storage (one at an offset), a float16 and
  a float64 tensor.
- small_legacy.pth: the same dictionary in the legacy format (_use_new_zipfile_serialization=False).
- dataparallel.pth: {'state_dict': nn.DataParallel(net).state_dict()} of a conv/BN/ReLU/conv/BN
  nn.Sequential: every key starts with "module.".
- malicious_zip.pth, malicious_legacy.pth: pickles that call os.system and builtins.eval when
  unpickled by plain pickle. The reader must refuse them without running anything.
- storage_mismatch.pth: small_zip.pth with one storage entry cut short.
- expected.safetensors: every tensor of small_zip.pth as float32 ("small.<name>"), the
  DataParallel state dict ("dp.<name>", no prefix), an input ("dp.input") and the network's
  eval-mode output on it ("dp.output").
"""
import io
import os
import pickle
import zipfile
from collections import OrderedDict

import torch
from torch import nn
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "ACONInteropTests", "Fixtures")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(14)
torch.set_num_threads(1)


def path(name):
    return os.path.join(OUT, name)


# --- small_zip.pth / small_legacy.pth ---------------------------------------------------------
net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 4))
with torch.no_grad():
    net[1].running_mean.normal_()
    net[1].running_var.uniform_(0.5, 2)
    net[1].num_batches_tracked += 5
state = OrderedDict(net.state_dict())
state["transposed"] = torch.randn(3, 5).t()  # strides (1, 5)
base = torch.randn(10)
state["view.head"] = base[:4]
state["view.tail"] = base[6:].view(2, 2)  # storage offset 6
state["half"] = torch.randn(2, 3).half()
state["double"] = torch.randn(3).double()
wrapper = {"state_dict": state, "epoch": 7, "arch": "tiny"}
torch.save(wrapper, path("small_zip.pth"))
torch.save(wrapper, path("small_legacy.pth"), _use_new_zipfile_serialization=False)

expected = {"small." + k: v.detach().to(torch.float32).contiguous().clone() for k, v in state.items()}

# --- dataparallel.pth ---------------------------------------------------------------------------
dp_net = nn.Sequential(
    nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 1), nn.BatchNorm2d(3)
)
with torch.no_grad():
    for bn in (dp_net[1], dp_net[4]):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.normal_()
        bn.bias.normal_()
dp_net.eval()
torch.save({"state_dict": nn.DataParallel(dp_net).state_dict()}, path("dataparallel.pth"))
x = torch.randn(2, 2, 5, 5)
with torch.no_grad():
    y = dp_net(x)
for k, v in dp_net.state_dict().items():
    expected["dp." + k] = v.detach().to(torch.float32).clone()
expected["dp.input"] = x
expected["dp.output"] = y
save_file(expected, path("expected.safetensors"), metadata={"script": "scripts/golden/pytorch_checkpoints.py", "torch": torch.__version__})


# --- malicious pickles --------------------------------------------------------------------------
class RunsACommand:
    def __reduce__(self):
        return (os.system, ("touch /tmp/acon-pwned",))


class Evaluates:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch /tmp/acon-pwned')",))


# torch.save pickles the object as it would a state dict: the zip's data.pkl names posix.system.
torch.save({"state_dict": {"weight": RunsACommand()}}, path("malicious_zip.pth"))
with open(path("malicious_legacy.pth"), "wb") as f:
    # The legacy layout: magic number, protocol version, sys info, then the object.
    for part in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(part, f, protocol=2)
    pickle.dump({"state_dict": Evaluates()}, f, protocol=2)


# --- storage_mismatch.pth -----------------------------------------------------------------------
with zipfile.ZipFile(path("small_zip.pth")) as source, zipfile.ZipFile(
    path("storage_mismatch.pth"), "w", compression=zipfile.ZIP_STORED
) as target:
    for info in source.infolist():
        data = source.read(info.filename)
        if info.filename.endswith("/data/0"):
            data = data[:-4]
        target.writestr(info.filename, data)

for name in sorted(os.listdir(OUT)):
    print(name, os.path.getsize(path(name)))
