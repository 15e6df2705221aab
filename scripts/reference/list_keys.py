"""Writes scripts/reference/keys/<model>.txt: every state_dict key of a reference model in
state_dict order, with its shape, dtype and kind (parameter or buffer), 1000 classes.

Run: /opt/torchvenv/bin/python scripts/reference/list_keys.py
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from acon_reference import ResNet, ShuffleNetV2, TFNet  # noqa: E402

MODELS = {
    "shufflenetv2_0.5x_acon": lambda: ShuffleNetV2("0.5x", act="acon"),
    "shufflenetv2_0.5x_meta": lambda: ShuffleNetV2("0.5x", act="meta"),
    "tfnet_0.5": lambda: TFNet(0.5),
    "resnet18_acon": lambda: ResNet(18, act="acon"),
    "resnet50_acon": lambda: ResNet(50, act="acon"),
    "resnet50_meta": lambda: ResNet(50, act="meta"),
}

os.makedirs(os.path.join(HERE, "keys"), exist_ok=True)
for name, build in MODELS.items():
    m = build()
    params = {k for k, _ in m.named_parameters()}
    lines = []
    for k, v in m.state_dict().items():
        kind = "parameter" if k in params else "buffer"
        lines.append(f"{k} {list(v.shape)} {str(v.dtype).replace('torch.', '')} {kind}")
    count = sum(p.numel() for p in m.parameters())
    with open(os.path.join(HERE, "keys", name + ".txt"), "w") as f:
        f.write(f"# {name}: {len(lines)} keys, {count} parameters (1000 classes)\n")
        f.write("\n".join(lines) + "\n")
    print(name, len(lines), "keys", count, "parameters")
