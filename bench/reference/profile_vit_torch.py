#!/usr/bin/env python3
"""Where the time of the ViT step goes: torch.profiler over the PyTorch reference.

vit_torch.ViT runs the same ops as our ViT (ReferenceParity tests), so its profile is the
op mix our step executes as well. Prints the top ops by self CPU time.

  .venv/bin/python bench/reference/profile_vit_torch.py [--mode train|eval] [--threads 1]
      [--patch 7 --hidden 128 --mlp 256 --heads 4 --layers 4 --batch 128]
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit_torch  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["train", "eval"], default="train")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--patch", type=int, default=7)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--mlp", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rows", type=int, default=20)
    a = p.parse_args()
    cfg = argparse.Namespace(image=(1, 28, 28), classes=10, patch=a.patch, hidden=a.hidden, mlp=a.mlp,
                             heads=a.heads, layers=a.layers, stochastic_depth=0.1 if a.mode == "train" else 0.0,
                             dropout=0.0, attention_dropout=0.0)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = vit_torch.ViT(cfg)
    x, y = torch.randn(a.batch, 1, 28, 28), torch.randint(10, (a.batch,))
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)

    def step():
        if a.mode == "eval":
            with torch.no_grad():
                model(x)
            return
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y, label_smoothing=0.1).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    model.train(a.mode == "train")
    for _ in range(3):
        step()
    with torch.profiler.profile() as prof:
        for _ in range(a.steps):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows))


if __name__ == "__main__":
    main()
