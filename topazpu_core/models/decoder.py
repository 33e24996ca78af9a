"""DCGAN-style decoder for the optional autoencoder term: classifier features -> image.

The features have spacing `stride` in input pixels; transposed convolutions (kernel 4, stride 2)
double the resolution until it is back at the input's, halving the width each time. The
reconstruction is compared with the input pixels those features are centred on.
"""
import math

from torch import nn


class Decoder(nn.Module):
    def __init__(self, in_channels, stride, ngf=32):
        super().__init__()
        n_up = int(round(math.log2(stride)))
        layers, cin = [], in_channels
        for i in range(n_up):
            cout = max(ngf // (2 ** i), 8)
            layers += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.stride = 2 ** n_up

    def forward(self, z):
        """(B, C, h, w) -> (B, h*stride, w*stride); pixel u sits at input offset u - stride/2 + 1/2 of output 0."""
        return self.body(z)[:, 0]
