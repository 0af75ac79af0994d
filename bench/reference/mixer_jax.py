#!/usr/bin/env python3
"""JAX/Flax (jit) reference of `scenic bench` for the MLP-Mixer classifier.

Scenic's baselines/mixer.py in flax.linen with the shapes of ours
(scenic/projects/baselines/mixer.cc): conv patch embedding, MixerBlocks (LayerNorm eps
1e-6, token-mixing MlpBlock on the transposed tokens, stochastic depth, residual;
LayerNorm, channel-mixing MlpBlock, residual; tanh-GELU), pre_logits_norm, mean over
tokens, zero-initialised head. Training as configs/fashion_mnist/mixer.yaml:
label-smoothed cross-entropy, global-norm clipping, AdamW (weight decay on parameters
with ndim > 1). Step: jax_runner.

  .venv-bench/bin/python bench/reference/mixer_jax.py --patch 16 --hidden 384 --layers 12 \
      --tokens_mlp 192 --channels_mlp 1536 --batch 8 --json
"""
import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import jax_runner


class MlpBlock(nn.Module):
    mlp_dim: int

    @nn.compact
    def __call__(self, x):
        dense = lambda n: nn.Dense(n, kernel_init=nn.initializers.xavier_uniform(),
                                   bias_init=nn.initializers.normal(1e-6))
        return dense(x.shape[-1])(nn.gelu(dense(self.mlp_dim)(x), approximate=True))


class MixerBlock(nn.Module):
    tokens_mlp: int
    channels_mlp: int
    sd_rate: float

    def drop_path(self, x, train):
        if not train or self.sd_rate <= 0.0:
            return x
        keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.sd_rate, (x.shape[0], 1, 1))
        return x * keep / (1.0 - self.sd_rate)

    @nn.compact
    def __call__(self, inputs, train):  # [B, N, D]
        y = nn.LayerNorm(epsilon=1e-6)(inputs).swapaxes(1, 2)
        x = self.drop_path(MlpBlock(self.tokens_mlp, name="token_mixing")(y).swapaxes(1, 2), train) + inputs
        y = MlpBlock(self.channels_mlp, name="channel_mixing")(nn.LayerNorm(epsilon=1e-6)(x))
        return self.drop_path(y, train) + x


class Mixer(nn.Module):
    num_classes: int
    patch: int
    hidden: int
    layers: int
    tokens_mlp: int
    channels_mlp: int
    stochastic_depth: float = 0.0

    @nn.compact
    def __call__(self, x, train):  # [B, H, W, C] -> [B, K]
        x = nn.Conv(self.hidden, (self.patch, self.patch), (self.patch, self.patch), padding="VALID",
                    name="embedding")(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        for i in range(self.layers):
            rate = self.stochastic_depth * i / max(self.layers - 1, 1)
            x = MixerBlock(self.tokens_mlp, self.channels_mlp, rate, name=f"mixerblock_{i}")(x, train)
        x = jnp.mean(nn.LayerNorm(epsilon=1e-6, name="pre_logits_norm")(x), axis=1)
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="output_projection")(x)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    jax_runner.add_common_args(p)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--tokens_mlp", type=int, default=192)
    p.add_argument("--channels_mlp", type=int, default=1536)
    p.add_argument("--stochastic_depth", type=float, default=0.0)
    p.add_argument("--weight_decay", type=float, default=0.05)
    a = p.parse_args()
    model = Mixer(a.classes, a.patch, a.hidden, a.layers, a.tokens_mlp, a.channels_mlp, a.stochastic_depth)
    # The mask must be a function: the parameter tree exists only once run() has initialised it.
    mask = lambda params: jax.tree_util.tree_map(lambda v: v.ndim > 1, params)
    tx = jax_runner.clip_then(a, optax.adamw(a.lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=a.weight_decay, mask=mask))
    jax_runner.run(a, model, tx)


if __name__ == "__main__":
    main()
