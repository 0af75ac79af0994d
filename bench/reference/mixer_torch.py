#!/usr/bin/env python3
"""PyTorch (Python, eager) reference of `scenic bench` for the MLP-Mixer classifier.

The network of scenic/projects/baselines/mixer.cc (Scenic's baselines/mixer.py): conv
patch embedding (lecun normal, zero bias), `layers` MixerBlocks (LayerNorm eps 1e-6,
token-mixing MlpBlock on the transposed tokens, stochastic depth, residual; LayerNorm,
channel-mixing MlpBlock, residual; MlpBlock = Dense, tanh-GELU, Dense with xavier
uniform kernels and N(0, 1e-6) biases), pre_logits_norm, mean over tokens, zero-
initialised head. Module names are ours. Training as configs/fashion_mnist/mixer.yaml:
label-smoothed cross-entropy, global-norm clipping, AdamW (1-D parameters exempt from
weight decay). Eval: no_grad forward.

  .venv/bin/python bench/reference/mixer_torch.py --image 3,224,224 --classes 1000 \
      --patch 16 --hidden 384 --layers 12 --tokens_mlp 192 --channels_mlp 1536 --batch 8 --json
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_runner


class MlpBlock(nn.Module):
    def __init__(self, d, mlp_dim):
        super().__init__()
        self.Dense_0, self.Dense_1 = nn.Linear(d, mlp_dim), nn.Linear(mlp_dim, d)
        for lin in (self.Dense_0, self.Dense_1):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.normal_(lin.bias, std=1e-6)

    def forward(self, x):
        return self.Dense_1(F.gelu(self.Dense_0(x), approximate="tanh"))


def stochastic_depth(x, rate, training):
    if not training or rate <= 0.0:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(1 - rate)
    return x * keep / (1 - rate)


class MixerBlock(nn.Module):
    def __init__(self, tokens, d, tokens_mlp, channels_mlp, sd_rate):
        super().__init__()
        self.LayerNorm_0, self.LayerNorm_1 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.token_mixing, self.channel_mixing = MlpBlock(tokens, tokens_mlp), MlpBlock(d, channels_mlp)
        self.sd_rate = sd_rate

    def forward(self, inputs):  # [B, N, D]
        x = self.token_mixing(self.LayerNorm_0(inputs).transpose(1, 2)).transpose(1, 2)
        x = stochastic_depth(x, self.sd_rate, self.training) + inputs
        y = self.channel_mixing(self.LayerNorm_1(x))
        return stochastic_depth(y, self.sd_rate, self.training) + x


class Mixer(nn.Module):
    def __init__(self, a):
        super().__init__()
        c, h, w = a.image
        self.embedding = nn.Conv2d(c, a.hidden, a.patch, stride=a.patch)
        std = math.sqrt(1.0 / self.embedding.weight[0].numel()) / 0.87962566103423978  # lecun normal
        nn.init.trunc_normal_(self.embedding.weight, 0.0, std, -2 * std, 2 * std)
        nn.init.zeros_(self.embedding.bias)
        tokens, L = (h // a.patch) * (w // a.patch), a.layers
        for i in range(L):
            rate = a.stochastic_depth * i / max(L - 1, 1)
            self.add_module(f"mixerblock_{i}", MixerBlock(tokens, a.hidden, a.tokens_mlp, a.channels_mlp, rate))
        self.pre_logits_norm = nn.LayerNorm(a.hidden, eps=1e-6)
        self.output_projection = nn.Linear(a.hidden, a.classes)
        nn.init.zeros_(self.output_projection.weight)
        nn.init.zeros_(self.output_projection.bias)
        self.L = L

    def forward(self, x):  # [B, C, H, W] -> [B, K]
        x = self.embedding(x).flatten(2).transpose(1, 2)
        for i in range(self.L):
            x = getattr(self, f"mixerblock_{i}")(x)
        return self.output_projection(self.pre_logits_norm(x).mean(1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    torch_runner.add_common_args(p)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--tokens_mlp", type=int, default=192)
    p.add_argument("--channels_mlp", type=int, default=1536)
    p.add_argument("--stochastic_depth", type=float, default=0.0)
    p.add_argument("--weight_decay", type=float, default=0.05)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = Mixer(a)
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() > 1], "weight_decay": a.weight_decay},
                             {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    torch_runner.run(a, model, opt)


if __name__ == "__main__":
    main()
