"""A PyTorch reference for the ACON family and the networks of the paper, written from the
descriptions in /work/shared/paper.md sections 1-4 for parity tests of the Swift model zoo.

Module names and registration order reproduce the reference implementation's checkpoint keys
(github.com/nmaac/acon), so that `state_dict()` here has exactly the keys of the reference's
checkpoints: `first_conv.0.weight`, `features.3.branch_main.0.weight`, `conv_last.2.p1`, ...
(listed in README.md). One deliberate difference: the global pooling is a mean over H and W
(adaptive), which equals the reference's AvgPool2d(7) at 224x224 and also works at the small
inputs of the parity tests.

Activation choice, per network: "acon" (ACON-C), "meta" (meta-ACON, channel-wise generator),
"relu" (the baseline; ReLU has no parameters, so only the activation keys disappear).
"""
import torch
from torch import nn
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------
# The ACON family (paper.md section 1-2)


def acon_c(x, p1, p2, beta):
    """ACON-C: (p1 - p2) x sigmoid(beta (p1 - p2) x) + p2 x, parameters broadcast per channel."""
    d = (p1 - p2) * x
    return d * torch.sigmoid(beta * d) + p2 * x


class AconC(nn.Module):
    """ACON-C with learnable per-channel p1, p2 ~ N(0, 1) and beta = 1, each [1, C, 1, 1]."""

    def __init__(self, channels):
        super().__init__()
        self.p1 = nn.Parameter(torch.randn(1, channels, 1, 1))
        self.p2 = nn.Parameter(torch.randn(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x):
        return acon_c(x, self.p1, self.p2, self.beta)


class MetaAconC(nn.Module):
    """meta-ACON: ACON-C whose beta is generated per sample and channel,
    beta = sigmoid(BN2(fc2(BN1(fc1(mean_HW(x)))))), fc1: C -> max(r, C // r), fc2: back to C,
    1x1 convolutions with bias, no nonlinearity between them."""

    def __init__(self, channels, r=16):
        super().__init__()
        hidden = max(r, channels // r)
        # p1, p2 are parameters of this module, so they come before the children's keys.
        self.p1 = nn.Parameter(torch.randn(1, channels, 1, 1))
        self.p2 = nn.Parameter(torch.randn(1, channels, 1, 1))
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(channels)

    def beta(self, x):
        pooled = x.mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)
        return torch.sigmoid(self.bn2(self.fc2(self.bn1(self.fc1(pooled)))))

    def forward(self, x):
        return acon_c(x, self.p1, self.p2, self.beta(x))


class AconFReLU(nn.Module):
    """ACON-FReLU as TFNet uses it: eta_a = x (stride 1) or maxpool3x3/2(x) (stride 2),
    eta_b = T(x) = BN1(dwconv3x3(x)) with the same stride, beta fixed at 1, and a BN on the
    output: BN2((eta_a - T) sigmoid(eta_a - T) + T)."""

    def __init__(self, channels, stride=1):
        super().__init__()
        assert stride in (1, 2)
        self.stride = stride
        self.conv_frelu = nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=True)
        self.bn1 = nn.BatchNorm2d(channels)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        a = F.max_pool2d(x, 3, 2, 1) if self.stride == 2 else x
        t = self.bn1(self.conv_frelu(x))
        d = a - t
        return self.bn2(d * torch.sigmoid(d) + t)


def make_activation(kind, channels, r=16):
    if kind == "acon":
        return AconC(channels)
    if kind == "meta":
        return MetaAconC(channels, r=r)
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {kind}")


def split_by_parity(x):
    """ShuffleNetV2's split for stride-1 blocks: even channels, odd channels."""
    n, c, h, w = x.shape
    assert c % 4 == 0
    t = x.reshape(n * c // 2, 2, h * w).permute(1, 0, 2).reshape(2, -1, c // 2, h, w)
    return t[0], t[1]


def global_mean(x):
    return x.mean(dim=(2, 3))


# ---------------------------------------------------------------------------------------------
# ShuffleNetV2 (paper.md section 3)

SHUFFLENET_CHANNELS = {
    "0.5x": [24, 48, 96, 192, 1024],
    "1.0x": [24, 116, 232, 464, 1024],
    "1.5x": [24, 176, 352, 704, 1024],
    "2.0x": [24, 244, 488, 976, 2048],
}


def conv_bn(cin, cout, k, stride, groups=1):
    """A convolution with bias (as the reference) and its BN, as two Sequential entries."""
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=True), nn.BatchNorm2d(cout)]


class ShuffleV2Block(nn.Module):
    """Stride 2: cat(branch_proj(x), branch_main(x)). Stride 1: the input is split by channel
    parity, even channels pass unchanged, odd ones go through branch_main: cat(even, main(odd)).

    branch_main: pw conv, BN, act, dw 3x3 conv, BN, pw conv, BN, act (indices 0-7).
    branch_proj: dw 3x3 conv, BN, pw conv, BN, act (indices 0-4)."""

    def __init__(self, cin, cout, mid, stride, act, r):
        super().__init__()
        self.stride = stride
        out_main = cout - cin
        self.branch_main = nn.Sequential(
            *conv_bn(cin, mid, 1, 1), make_activation(act, mid, r),
            *conv_bn(mid, mid, 3, stride, groups=mid),
            *conv_bn(mid, out_main, 1, 1), make_activation(act, out_main, r))
        if stride == 2:
            self.branch_proj = nn.Sequential(
                *conv_bn(cin, cin, 3, 2, groups=cin),
                *conv_bn(cin, cin, 1, 1), make_activation(act, cin, r))
        else:
            self.branch_proj = None

    def forward(self, x):
        if self.stride == 1:
            keep, work = split_by_parity(x)
            return torch.cat((keep, self.branch_main(work)), 1)
        return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)


class ShuffleNetV2(nn.Module):
    def __init__(self, size="0.5x", num_classes=1000, act="acon", r=None):
        super().__init__()
        widths = SHUFFLENET_CHANNELS[size]
        # r = 16, except 8 for the narrowest model (paper.md section 2).
        r = r if r is not None else (8 if size == "0.5x" else 16)
        self.size = size
        self.first_conv = nn.Sequential(*conv_bn(3, widths[0], 3, 2), make_activation(act, widths[0], r))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks = []
        cin = widths[0]
        for stage, repeats in enumerate([4, 8, 4]):
            cout = widths[stage + 1]
            for i in range(repeats):
                if i == 0:
                    blocks.append(ShuffleV2Block(cin, cout, cout // 2, 2, act, r))
                else:
                    blocks.append(ShuffleV2Block(cin // 2, cout, cout // 2, 1, act, r))
                cin = cout
        self.features = nn.Sequential(*blocks)
        self.conv_last = nn.Sequential(*conv_bn(cin, widths[-1], 1, 1), make_activation(act, widths[-1], r))
        self.dropout = nn.Dropout(0.2) if size == "2.0x" else None
        self.classifier = nn.Sequential(nn.Linear(widths[-1], num_classes, bias=True))
        init_shufflenet_style(self, small_std_names=("first",))

    def forward(self, x):
        x = self.maxpool(self.first_conv(x))
        x = self.conv_last(self.features(x))
        x = global_mean(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.classifier(x)


def init_shufflenet_style(model, small_std_names):
    """paper.md section 4: convs N(0, 1 / weight.shape[1]) (N(0, 0.01) when the module's name
    contains one of `small_std_names`), conv biases 0; BN weight 1, bias 1e-4, running mean 0;
    Linear N(0, 0.01), bias 0. ACON parameters keep their own init (p ~ N(0,1), beta = 1)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            std = 0.01 if any(s in name for s in small_std_names) else 1.0 / m.weight.shape[1]
            nn.init.normal_(m.weight, 0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.constant_(m.bias, 1e-4)
            nn.init.zeros_(m.running_mean)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# TFNet (paper.md section 3)


class TFBlock(nn.Module):
    """branch_main: pw conv, BN, ACON-FReLU, pw conv, BN. Stride 1: acon(x + main(x));
    stride 2: acon(cat(x, main(x))), with acon an ACON-FReLU of stride 2 on 2x the channels."""

    def __init__(self, channels, stride):
        super().__init__()
        self.stride = stride
        self.branch_main = nn.Sequential(
            *conv_bn(channels, channels, 1, 1), AconFReLU(channels), *conv_bn(channels, channels, 1, 1))
        self.acon = AconFReLU(channels * stride, stride)

    def forward(self, x):
        y = self.branch_main(x)
        if self.stride == 1:
            return self.acon(x + y)
        return self.acon(torch.cat((x, y), 1))


class TFNet(nn.Module):
    def __init__(self, scale=0.5, num_classes=1000):
        super().__init__()
        c = int(16 * scale)
        self.first_conv = nn.Sequential(*conv_bn(3, c, 3, 2), nn.ReLU())
        blocks = []
        for repeats in [2, 3, 8, 3]:
            for i in range(repeats):
                blocks.append(TFBlock(c, 2 if i == 0 else 1))
                if i == 0:
                    c *= 2
        self.features = nn.Sequential(*blocks)
        self.conv_last = nn.Sequential(*conv_bn(c, 1024, 1, 1), AconFReLU(1024))
        self.dropout = nn.Dropout(0.2) if scale > 0.5 else None
        self.classifier = nn.Sequential(nn.Linear(1024, num_classes, bias=True))
        init_shufflenet_style(self, small_std_names=("first", "frelu"))

    def forward(self, x):
        x = self.conv_last(self.features(self.first_conv(x)))
        x = global_mean(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.classifier(x)


# ---------------------------------------------------------------------------------------------
# ResNet with ACON (paper.md section 3)


def conv(cin, cout, k, stride=1):
    return nn.Conv2d(cin, cout, k, stride, k // 2, bias=True)


class BasicBlock(nn.Module):
    """conv3x3, BN, acon1, conv3x3, BN, (+ downsample(x)), acon2: both activations ACON."""
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None, act="acon"):
        super().__init__()
        self.conv1 = conv(cin, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.acon1 = make_activation(act, planes)
        self.conv2 = conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.acon2 = make_activation(act, planes)
        self.downsample = downsample

    def forward(self, x):
        y = self.bn2(self.conv2(self.acon1(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.acon2(y + identity)


class Bottleneck(nn.Module):
    """conv1x1 (carries the stride), BN, ReLU, conv3x3, BN, acon, conv1x1, BN,
    (+ downsample(x)), ReLU: only the activation after the 3x3 conv is ACON."""
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None, act="acon"):
        super().__init__()
        self.conv1 = conv(cin, planes, 1, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.acon = make_activation(act, planes)
        self.conv3 = conv(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.acon(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(y + identity)


RESNET_DEPTHS = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


class ResNet(nn.Module):
    def __init__(self, depth=50, num_classes=1000, act="acon"):
        super().__init__()
        block, repeats = RESNET_DEPTHS[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=True)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (planes, n) in enumerate(zip([64, 128, 256, 512], repeats)):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                s = stride if j == 0 else 1
                down = None
                if j == 0 and (s != 1 or cin != planes * block.expansion):
                    down = nn.Sequential(conv(cin, planes * block.expansion, 1, s),
                                         nn.BatchNorm2d(planes * block.expansion))
                layers.append(block(cin, planes, s, down, act))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        # paper.md section 4: Kaiming normal (fan_out) for every conv, BN weight 1 and bias 0;
        # the Linear layer keeps PyTorch's default init.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(global_mean(x))


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    for name, m in [
        ("ShuffleNetV2 0.5x ACON-C", ShuffleNetV2("0.5x", act="acon")),
        ("ShuffleNetV2 0.5x meta-ACON", ShuffleNetV2("0.5x", act="meta")),
        ("ShuffleNetV2 0.5x ReLU", ShuffleNetV2("0.5x", act="relu")),
        ("ShuffleNetV2 1.5x ACON-C", ShuffleNetV2("1.5x", act="acon")),
        ("ShuffleNetV2 1.5x meta-ACON", ShuffleNetV2("1.5x", act="meta")),
        ("TFNet 0.5", TFNet(0.5)), ("TFNet 1.0", TFNet(1.0)), ("TFNet 1.5", TFNet(1.5)), ("TFNet 2.0", TFNet(2.0)),
        ("ResNet-18 ACON-C", ResNet(18)), ("ResNet-50 ACON-C", ResNet(50)), ("ResNet-50 meta-ACON", ResNet(50, act="meta")),
        ("ResNet-101 ACON-C", ResNet(101)), ("ResNet-152 ACON-C", ResNet(152)),
    ]:
        m.eval()
        with torch.no_grad():
            y = m(torch.randn(1, 3, 224, 224))
        print(f"{name}: {parameter_count(m) / 1e6:.3f}M parameters, output {list(y.shape)}")
