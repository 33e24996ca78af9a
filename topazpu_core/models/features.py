"""Feature extractors: stacks of unpadded ("valid") convolutions with a known receptive field and stride.

Every extractor maps an image (B, 1, H, W) to features (B, C, h, w) with
h = (H - receptive_field) // stride + 1. Output position j is centred on input pixel
stride * j + (receptive_field - 1) / 2 (all kernels are odd and symmetric), which is what
the classifier relies on to align labels in training and scores in inference.
"""
import torch
from torch import nn


def _conv_bn_act(cin, cout, kernel, stride=1, dilation=1, bn=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride=stride, dilation=dilation, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.PReLU(cout))
    return layers


class ConvFeatures(nn.Module):
    """Plain convolution stack (the paper's conv31, and deeper conv63/conv127).

    `kernels` lists the kernel sizes; every layer but the last has stride 2; widths start at
    `units` and are multiplied by `unit_scaling` after each strided layer.
    """

    def __init__(self, kernels, units=32, unit_scaling=2, bn=True):
        super().__init__()
        layers, cin, width = [], 1, units
        rf, jump = 1, 1
        for i, k in enumerate(kernels):
            stride = 2 if i < len(kernels) - 1 else 1
            layers += _conv_bn_act(cin, width, k, stride=stride, bn=bn)
            rf += (k - 1) * jump
            jump *= stride
            cin = width
            if stride == 2:
                width = int(width * unit_scaling)
        self.body = nn.Sequential(*layers)
        self.out_channels = cin
        self.receptive_field = rf
        self.stride = jump

    def forward(self, x):
        return self.body(x)


class ResidualBlock(nn.Module):
    """Two valid 3x3 convolutions (the second dilated) with a centre-cropped shortcut."""

    def __init__(self, channels, dilation=2, bn=True):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, bias=not bn)
        self.bn1 = nn.BatchNorm2d(channels) if bn else nn.Identity()
        self.act1 = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, dilation=dilation, bias=not bn)
        self.bn2 = nn.BatchNorm2d(channels) if bn else nn.Identity()
        self.act2 = nn.PReLU(channels)
        self.crop = 1 + dilation
        self.rf_growth = 2 + 2 * dilation  # in units of the input's pixel spacing

    def forward(self, x):
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        c = self.crop
        return self.act2(y + x[:, :, c:-c, c:-c])


class ResNetFeatures(nn.Module):
    """Residual feature extractor: a strided 7x7 stem, then stages of residual blocks.

    `blocks` gives the number of residual blocks per stage; stages after the first start with
    a strided 3x3 convolution that multiplies the width by `unit_scaling`.
    resnet8 = stem + [1, 2] blocks + one strided conv: receptive field 71 px, stride 4.
    """

    def __init__(self, blocks, units=32, unit_scaling=2, bn=True):
        super().__init__()
        layers = _conv_bn_act(1, units, 7, stride=2, bn=bn)
        rf, jump, width = 7, 2, units
        for stage, n in enumerate(blocks):
            if stage > 0:
                new_width = int(width * unit_scaling)
                layers += _conv_bn_act(width, new_width, 3, stride=2, bn=bn)
                rf += 2 * jump
                jump *= 2
                width = new_width
            for _ in range(n):
                block = ResidualBlock(width, dilation=2, bn=bn)
                layers.append(block)
                rf += block.rf_growth * jump
        self.body = nn.Sequential(*layers)
        self.out_channels = width
        self.receptive_field = rf
        self.stride = jump

    def forward(self, x):
        return self.body(x)


# Architecture name -> (builder, keyword arguments). The one registry of feature extractors.
ARCHITECTURES = {
    "conv31": (ConvFeatures, {"kernels": [7, 5, 5]}),
    "conv63": (ConvFeatures, {"kernels": [7, 5, 5, 5]}),
    "conv127": (ConvFeatures, {"kernels": [7, 5, 5, 5, 5]}),
    "resnet8": (ResNetFeatures, {"blocks": [1, 2]}),
    "resnet16": (ResNetFeatures, {"blocks": [2, 3]}),
}


def build_features(architecture, units=32, bn=True):
    if architecture not in ARCHITECTURES:
        raise ValueError("unknown architecture %r (choose from %s)" % (architecture, ", ".join(ARCHITECTURES)))
    builder, kwargs = ARCHITECTURES[architecture]
    return builder(units=units, bn=bn, **kwargs)

