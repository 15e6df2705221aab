# Expected values for TransformTests.bilinearMatchesPyTorch: torch.nn.functional.interpolate,
# mode="bilinear", align_corners=False, antialias=False, on a small ramp image.
# Run: /opt/torchvenv/bin/python scripts/make_data_goldens.py (values are pasted into the test).
import torch
import torch.nn.functional as F

x = torch.arange(2 * 4 * 5, dtype=torch.float32).reshape(1, 2, 4, 5)
x = (x * 7) % 31  # not a linear ramp, so interpolation errors show
for size in [(3, 7), (6, 2)]:
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    print(size, [round(v, 5) for v in y.flatten().tolist()])
