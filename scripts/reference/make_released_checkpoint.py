"""A checkpoint shaped like the reference's released ones, for trying `acon` on them without
Python: the reference network (acon_reference.py) of the given size and activation, 1000
classes, batch norm statistics set away from their initial values, saved as the reference
training script saves it: torch.save({'state_dict': nn.DataParallel(model).state_dict()}),
every key prefixed with "module.".

Run: /opt/torchvenv/bin/python scripts/reference/make_released_checkpoint.py OUT_DIR [--size 0.5x] [--act acon]

Writes OUT_DIR/ShuffleNetV2_<size>_<act>.pth.tar (zip format), ..._legacy.pth.tar (the
pre-1.6 format), input.safetensors (`input`, one 224x224 BGR-range image) and
torch_logits.safetensors (`logits`, the network's eval-mode output on it), so that
`acon forward` on the checkpoint can be compared with PyTorch.
"""
import argparse
import os
import sys

import torch
from torch import nn
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from acon_reference import ShuffleNetV2  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--size", default="0.5x")
    ap.add_argument("--act", default="acon", choices=["acon", "meta", "relu"])
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(2021)
    model = ShuffleNetV2(args.size, 1000, args.act)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(150_000)
    model.eval()
    state = {"state_dict": nn.DataParallel(model).state_dict()}
    stem = os.path.join(args.out, f"ShuffleNetV2_{args.size}_{args.act}")
    torch.save(state, stem + ".pth.tar")
    torch.save(state, stem + "_legacy.pth.tar", _use_new_zipfile_serialization=False)
    x = torch.rand(1, 3, 224, 224) * 255
    with torch.no_grad():
        y = model(x)
    save_file({"input": x}, os.path.join(args.out, "input.safetensors"))
    save_file({"logits": y}, os.path.join(args.out, "torch_logits.safetensors"))
    print(f"wrote {stem}.pth.tar ({os.path.getsize(stem + '.pth.tar')} bytes), {len(state['state_dict'])} keys")


if __name__ == "__main__":
    main()
