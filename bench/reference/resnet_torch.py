#!/usr/bin/env python3
"""PyTorch (Python, eager) reference of `scenic bench` for the ResNet classifier.

The network of scenic/projects/baselines/resnet.cc (Scenic's baselines/resnet.py, v1.5):
7x7/2 stem conv + BatchNorm + ReLU, 3x3/2 max-pool, stages of residual blocks (bottleneck
1x1-3x3-1x1 with the stride on the 3x3 for depth >= 26 and 50+, else two 3x3), a
projection shortcut (1x1 conv + BN) whenever the input width differs from 4 x filters or
the block strides (Scenic's rule, so every basic block has one), the last BN scale of
each block zero-initialised, global average pool, Dense head; convs without bias, lecun
normal init, BatchNorm momentum 0.9 (torch's 0.1) and eps 1e-5. torch's BatchNorm2d is
used as a PyTorch user would: it differs from our Flax-style one only in the running
variance (unbiased), which the step's speed does not see. Module names are ours.
Training as configs/fashion_mnist/resnet.yaml: SGD with momentum 0.9, Scenic's L2 term
0.5 * l2_decay_factor * sum(p^2) (ndim > 1) on the loss, no clipping. Eval: no_grad forward.

  .venv/bin/python bench/reference/resnet_torch.py --image 3,224,224 --classes 1000 \
      --depth 50 --filters 64 --batch 8 --mode train --json
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_runner

BLOCKS = {5: ([1], True), 8: ([1, 1], True), 11: ([1, 1, 1], True), 14: ([1, 1, 1, 1], True),
          9: ([1, 1, 1, 1], False), 18: ([2, 2, 2, 2], False), 26: ([2, 2, 2, 2], True), 34: ([3, 4, 6, 3], False),
          50: ([3, 4, 6, 3], True), 101: ([3, 4, 23, 3], True), 152: ([3, 8, 36, 3], True),
          200: ([3, 24, 36, 3], True)}


def lecun_normal_(w):
    # Flax's lecun_normal: truncated normal (+-2 std), variance 1 / fan_in.
    std = math.sqrt(1.0 / w[0].numel()) / 0.87962566103423978
    nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std)


def conv(cin, cout, k, stride):
    c = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
    lecun_normal_(c.weight)
    return c


def bn(c, zero=False):
    b = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
    if zero:
        nn.init.zeros_(b.weight)
    return b


class ResidualBlock(nn.Module):
    def __init__(self, cin, filters, stride, bottleneck):
        super().__init__()
        cout = 4 * filters if bottleneck else filters
        self.out_channels = cout
        self.proj_conv = self.proj_bn = None
        if cin != 4 * filters or stride != 1:
            self.proj_conv, self.proj_bn = conv(cin, cout, 1, stride), bn(cout)
        self.conv1 = self.bn1 = None
        c = cin
        if bottleneck:
            self.conv1, self.bn1 = conv(cin, filters, 1, 1), bn(filters)
            c = filters
        self.conv2, self.bn2 = conv(c, filters, 3, stride), bn(filters)
        self.conv3 = conv(filters, cout, 1 if bottleneck else 3, 1)
        self.bn3 = bn(cout, zero=True)

    def forward(self, x):
        residual = x if self.proj_conv is None else self.proj_bn(self.proj_conv(x))
        h = x if self.conv1 is None else F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(h)))
        return F.relu(residual + self.bn3(self.conv3(y)))


class ResNet(nn.Module):
    def __init__(self, in_channels, classes, depth, filters):
        super().__init__()
        sizes, bottleneck = BLOCKS[depth]
        self.stem_conv, self.init_bn = conv(in_channels, filters, 7, 2), bn(filters)
        blocks, c = [], filters
        for i, n in enumerate(sizes):
            for j in range(n):
                blocks.append(ResidualBlock(c, filters << i, 2 if (i > 0 and j == 0) else 1, bottleneck))
                c = blocks[-1].out_channels
        for k, b in enumerate(blocks):
            self.add_module(f"ResidualBlock_{k}", b)
        self.blocks = blocks
        self.output_projection = nn.Linear(c, classes)
        lecun_normal_(self.output_projection.weight)
        nn.init.zeros_(self.output_projection.bias)

    def forward(self, x):  # [B, C, H, W] -> [B, K]
        x = F.max_pool2d(F.relu(self.init_bn(self.stem_conv(x))), 3, 2, 1)
        for b in self.blocks:
            x = b(x)
        return self.output_projection(x.mean((2, 3)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    torch_runner.add_common_args(p)
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--l2_decay_factor", type=float, default=0.0005)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = ResNet(a.image[0], a.classes, a.depth, a.filters)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    torch_runner.run(a, model, opt, l2_decay_factor=a.l2_decay_factor)


if __name__ == "__main__":
    main()
