#!/usr/bin/env python3
"""JAX/Flax (jit) reference of `scenic bench` for the ResNet classifier.

Scenic's baselines/resnet.py in flax.linen, with the shapes of ours
(scenic/projects/baselines/resnet.cc): 7x7/2 stem conv + BatchNorm + ReLU, 3x3/2
max-pool, residual stages (bottleneck for depth 26 and >= 50), projection shortcut when
the width differs from 4 x filters or the block strides, zero-initialised last BN scale,
global average pool, Dense head; BatchNorm momentum 0.9, eps 1e-5. Paddings are written
out as ours (3 for the stem, 1 for 3x3 convs and the pool) instead of Flax's "SAME",
which pads odd totals on the other side. Training as configs/fashion_mnist/resnet.yaml:
SGD momentum 0.9 (optax.sgd), L2 term on the loss, no clipping. Step: jax_runner.

  .venv-bench/bin/python bench/reference/resnet_jax.py --depth 50 --filters 64 --batch 8 --json
"""
import argparse

import flax.linen as nn
import jax.numpy as jnp
import optax

import jax_runner

BLOCKS = {18: ([2, 2, 2, 2], False), 26: ([2, 2, 2, 2], True), 34: ([3, 4, 6, 3], False),
          50: ([3, 4, 6, 3], True), 101: ([3, 4, 23, 3], True), 152: ([3, 8, 36, 3], True)}


class ResidualBlock(nn.Module):
    filters: int
    strides: int
    bottleneck: bool

    @nn.compact
    def __call__(self, x, train):
        conv = lambda f, k, s: nn.Conv(f, (k, k), (s, s), padding=[(k // 2, k // 2)] * 2, use_bias=False)
        bn = lambda **kw: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, **kw)
        out = 4 * self.filters if self.bottleneck else self.filters
        residual = x
        if x.shape[-1] != 4 * self.filters or self.strides != 1:
            residual = bn()(conv(out, 1, self.strides)(x))
        y = x
        if self.bottleneck:
            y = nn.relu(bn()(conv(self.filters, 1, 1)(y)))
        y = nn.relu(bn()(conv(self.filters, 3, self.strides)(y)))
        y = bn(scale_init=nn.initializers.zeros)(conv(out, 1 if self.bottleneck else 3, 1)(y))
        return nn.relu(residual + y)


class ResNet(nn.Module):
    num_classes: int
    depth: int
    filters: int

    @nn.compact
    def __call__(self, x, train):  # [B, H, W, C] -> [B, K]
        sizes, bottleneck = BLOCKS[self.depth]
        x = nn.Conv(self.filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False, name="stem_conv")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="init_bn")(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for i, n in enumerate(sizes):
            for j in range(n):
                x = ResidualBlock(self.filters * 2 ** i, 2 if (i > 0 and j == 0) else 1, bottleneck)(x, train)
        return nn.Dense(self.num_classes, name="output_projection")(jnp.mean(x, axis=(1, 2)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    jax_runner.add_common_args(p)
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--l2_decay_factor", type=float, default=0.0005)
    a = p.parse_args()
    tx = jax_runner.clip_then(a, optax.sgd(a.lr, momentum=a.momentum))
    jax_runner.run(a, ResNet(a.classes, a.depth, a.filters), tx, l2_decay_factor=a.l2_decay_factor)


if __name__ == "__main__":
    main()
