"""Converts a PyTorch checkpoint (a pickled state_dict, or {'state_dict': ...} as the reference
training scripts save it, keys possibly prefixed by DataParallel's "module.") into a safetensors
file that the Swift code loads with Module.load(from:).

Run: /opt/torchvenv/bin/python scripts/reference/convert_checkpoint.py IN.pth.tar OUT.safetensors
Only tensors are kept; the file's metadata records the source name and any integer/string
entries of the checkpoint (epoch, arch).
"""
import argparse
import os

import torch
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source")
    ap.add_argument("destination")
    ap.add_argument("--keep-prefix", action="store_true", help='keep a "module." prefix')
    args = ap.parse_args()

    # weights_only: a checkpoint from elsewhere must not run code while it loads.
    ckpt = torch.load(args.source, map_location="cpu", weights_only=True)
    metadata = {"source": os.path.basename(args.source)}
    state = ckpt
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        state = ckpt["state_dict"]
        for k, v in ckpt.items():
            if isinstance(v, (int, float, str)):
                metadata[k] = str(v)
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise SystemExit(f"{args.source}: no tensors found")
    if not args.keep_prefix and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    # safetensors refuses shared or non-contiguous storage: give every tensor its own copy.
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    save_file(tensors, args.destination, metadata=metadata)
    count = sum(v.numel() for v in tensors.values())
    print(f"{args.destination}: {len(tensors)} tensors, {count} elements")


if __name__ == "__main__":
    main()
