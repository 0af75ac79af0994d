#!/usr/bin/env python3
"""PyTorch (Python, eager) reference of `scenic bench` for the ViT classifier.

The same network as scenic/projects/baselines/vit.cc (conv patch embedding, [CLS]
token, learned 1-D position embedding, pre-LN blocks with separate q/k/v/out
projections and fused scaled-dot-product attention, tanh-GELU MLP, LayerNorm eps 1e-6,
stochastic depth growing linearly over the blocks, zero-initialised head) and the same
training step as classification_trainer: forward, label-smoothed softmax cross-entropy
(mean over the batch), backward, global-norm gradient clipping, AdamW (decoupled
weight decay, 1-D parameters exempt as with skip_scale_and_bias_regularization),
accuracy and loss sums kept on the device. Eval: no_grad forward + the same metrics.

Timing matches scenic bench: `--warmup` untimed steps, then each of `--steps` steps
timed on its own (torch.cuda.synchronize on CUDA); examples/s = steps x batch / total
time; the peak RSS is the VmHWM after resetting it once the warm-up is done. One
synthetic batch (inputs ~ N(0, 1), random labels) is reused, as scenic bench does.

Prints one JSON object (with --json) or a short table. Run from compare.sh:
  .venv/bin/python bench/reference/vit_torch.py --image 1,28,28 --classes 10 \
      --patch 7 --hidden 128 --mlp 256 --heads 4 --layers 4 --batch 128 --mode train
"""
import argparse
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench_common import report, time_steps
from torch_runner import add_autocast_arg, autocast, gpu_peak


def lecun_normal_(w):
    # Flax's lecun_normal: truncated normal (+-2 std), variance 1 / fan_in.
    fan_in = w[0].numel()
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std)


class MultiHeadAttention(nn.Module):
    def __init__(self, d, heads, attn_dropout):
        super().__init__()
        self.heads, self.attn_dropout = heads, attn_dropout
        self.query, self.key, self.value, self.out = (nn.Linear(d, d) for _ in range(4))
        for lin in (self.query, self.key, self.value, self.out):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x):  # [B, N, D]
        b, n, d = x.shape
        split = lambda t: t.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # [B, H, N, dh]
        y = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)),
                                           dropout_p=self.attn_dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class MlpBlock(nn.Module):
    def __init__(self, d, mlp_dim, dropout):
        super().__init__()
        self.Dense_0, self.Dense_1, self.dropout = nn.Linear(d, mlp_dim), nn.Linear(mlp_dim, d), dropout
        for lin in (self.Dense_0, self.Dense_1):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.normal_(lin.bias, std=1e-6)

    def forward(self, x):
        h = F.dropout(F.gelu(self.Dense_0(x), approximate="tanh"), self.dropout, self.training)
        return F.dropout(self.Dense_1(h), self.dropout, self.training)


def stochastic_depth(x, rate, training):
    if not training or rate <= 0.0:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(1 - rate)
    return x * keep / (1 - rate)


class Encoder1DBlock(nn.Module):
    def __init__(self, a, sd_rate):
        super().__init__()
        self.LayerNorm_0 = nn.LayerNorm(a.hidden, eps=1e-6)
        self.MultiHeadDotProductAttention_1 = MultiHeadAttention(a.hidden, a.heads, a.attention_dropout)
        self.LayerNorm_2 = nn.LayerNorm(a.hidden, eps=1e-6)
        self.MlpBlock_3 = MlpBlock(a.hidden, a.mlp, a.dropout)
        self.dropout, self.sd_rate = a.dropout, sd_rate

    def forward(self, inputs):
        x = F.dropout(self.MultiHeadDotProductAttention_1(self.LayerNorm_0(inputs)), self.dropout, self.training)
        x = stochastic_depth(x, self.sd_rate, self.training) + inputs
        y = self.MlpBlock_3(self.LayerNorm_2(x))
        return stochastic_depth(y, self.sd_rate, self.training) + x


class ViT(nn.Module):
    def __init__(self, a):
        super().__init__()
        c, h, w = a.image
        self.embedding = nn.Conv2d(c, a.hidden, a.patch, stride=a.patch)
        lecun_normal_(self.embedding.weight)
        nn.init.zeros_(self.embedding.bias)
        self.cls = nn.Parameter(torch.zeros(1, 1, a.hidden))
        n = (h // a.patch) * (w // a.patch) + 1
        self.pos_embedding = nn.Parameter(torch.empty(1, n, a.hidden).normal_(std=0.02))
        L = a.layers
        self.blocks = nn.ModuleList(
            Encoder1DBlock(a, a.stochastic_depth * i / (L - 1) if L > 1 else 0.0) for i in range(L))
        self.encoder_norm = nn.LayerNorm(a.hidden, eps=1e-6)
        self.output_projection = nn.Linear(a.hidden, a.classes)
        nn.init.zeros_(self.output_projection.weight)
        nn.init.zeros_(self.output_projection.bias)
        self.dropout = a.dropout

    def forward(self, x):  # [B, C, H, W] -> [B, K]
        x = self.embedding(x).flatten(2).transpose(1, 2)  # [B, N, D]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos_embedding
        x = F.dropout(x, self.dropout, self.training)
        for block in self.blocks:
            x = block(x)
        return self.output_projection(self.encoder_norm(x)[:, 0])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ints = lambda s: tuple(int(v) for v in s.split(","))
    p.add_argument("--image", type=ints, default=(1, 28, 28), help="C,H,W")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--patch", type=int, default=7)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--mlp", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--attention_dropout", type=float, default=0.0)
    p.add_argument("--stochastic_depth", type=float, default=0.0)
    p.add_argument("--label_smoothing", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight_decay", type=float, default=1e-4)
    p.add_argument("--max_grad_norm", type=float, default=None)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--mode", choices=["train", "eval"], default="train")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    add_autocast_arg(p)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    model = ViT(a).to(dev)
    num_params = sum(p.numel() for p in model.parameters())
    x = torch.randn((a.batch,) + a.image, device=dev)
    labels = torch.randint(a.classes, (a.batch,), device=dev)
    train = a.mode == "train"
    params = list(model.parameters())
    decay = [p for p in params if p.dim() > 1]
    no_decay = [p for p in params if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    acc_sum = torch.zeros((), device=dev)
    loss_sum = torch.zeros((), device=dev)
    grad_norm_sum = torch.zeros((), device=dev, dtype=torch.float64)
    last_loss = None

    def metrics(logits):
        nonlocal acc_sum, loss_sum
        with torch.no_grad():
            acc_sum += (logits.argmax(-1) == labels).sum()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")

    def step():
        nonlocal last_loss, grad_norm_sum
        if not train:
            with torch.no_grad():
                with autocast(a, dev.type):
                    logits = model(x)
                metrics(logits.float())
            return
        opt.zero_grad(set_to_none=True)
        with autocast(a, dev.type):
            logits = model(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, labels, label_smoothing=a.label_smoothing)
        loss.backward()
        if a.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, a.max_grad_norm)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        opt.step()
        metrics(logits.detach())
        grad_norm_sum += norm.detach()
        last_loss = loss.detach()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def timed_step():  # blocks until the step's work is done, as time_steps needs
        step()
        sync()

    model.train(train)
    reset_gpu, read_gpu = gpu_peak(dev)
    times, rss = time_steps(timed_step, a.warmup, a.steps, reset_gpu)
    report("torch_eager", a.mode, a.batch, num_params, times, rss, a.json, device=str(dev),
           threads=torch.get_num_threads(), gpu_peak_allocated_mib=read_gpu(),
           last_loss=float(last_loss) if last_loss is not None else 0.0, torch=torch.__version__)


if __name__ == "__main__":
    main()
