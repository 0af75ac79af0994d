#!/usr/bin/env python3
"""JAX/Flax (jit) reference of `scenic bench` for the ViT classifier.

The ViT of Scenic's projects/baselines/vit.py, written out in flax.linen with the same
shapes as ours (scenic/projects/baselines/vit.cc): conv patch embedding, [CLS] token,
learned 1-D position embedding, pre-LN Encoder1DBlocks (LayerNorm eps 1e-6,
MultiHeadDotProductAttention with q/k/v/out projections, tanh-GELU MlpBlock, stochastic
depth growing linearly over the blocks), encoder_norm, zero-initialised head. Inputs
are NHWC here, as in Scenic. The training step is Scenic's classification_trainer step
as one jitted function: forward, label-smoothed softmax cross-entropy (mean), grads,
optax clip_by_global_norm + adamw (weight-decay mask: parameters with ndim > 1, as
skip_scale_and_bias_regularization), accuracy and loss sums carried on the device.
Parameters and optimizer state are donated, so XLA updates them in place.

Timing matches scenic bench: `--warmup` untimed steps (the first also compiles), then
each of `--steps` steps timed on its own up to block_until_ready; examples/s = steps x
batch / total time; peak RSS = VmHWM after resetting it when the warm-up is done.

Needs jax, flax and optax (bench/compare.sh installs them into .venv-bench).
"""
import argparse
import os

import jax
import jax.numpy as jnp
import flax.linen as nn
import optax

from bench_common import report, time_steps
from jax_runner import gpu_peak_mib


class MlpBlock(nn.Module):
    mlp_dim: int
    dropout: float

    @nn.compact
    def __call__(self, x, train):
        d = x.shape[-1]
        h = nn.Dense(self.mlp_dim, kernel_init=nn.initializers.xavier_uniform(),
                     bias_init=nn.initializers.normal(1e-6))(x)
        h = nn.Dropout(self.dropout)(nn.gelu(h, approximate=True), deterministic=not train)
        h = nn.Dense(d, kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.normal(1e-6))(h)
        return nn.Dropout(self.dropout)(h, deterministic=not train)


class StochasticDepth(nn.Module):
    rate: float

    @nn.compact
    def __call__(self, x, train):
        if not train or self.rate <= 0.0:
            return x
        keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.rate, (x.shape[0],) + (1,) * (x.ndim - 1))
        return x * keep / (1.0 - self.rate)


class Encoder1DBlock(nn.Module):
    mlp_dim: int
    num_heads: int
    dropout: float
    attention_dropout: float
    sd_rate: float

    @nn.compact
    def __call__(self, inputs, train):
        x = nn.LayerNorm(epsilon=1e-6)(inputs)
        x = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, kernel_init=nn.initializers.xavier_uniform(),
                                            dropout_rate=self.attention_dropout, broadcast_dropout=False,
                                            deterministic=not train)(x, x)
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        x = StochasticDepth(self.sd_rate)(x, train) + inputs
        y = MlpBlock(self.mlp_dim, self.dropout)(nn.LayerNorm(epsilon=1e-6)(x), train)
        return StochasticDepth(self.sd_rate)(y, train) + x


class ViT(nn.Module):
    num_classes: int
    patch: int
    hidden: int
    mlp_dim: int
    num_heads: int
    num_layers: int
    dropout: float = 0.0
    attention_dropout: float = 0.0
    stochastic_depth: float = 0.0

    @nn.compact
    def __call__(self, x, train):  # [B, H, W, C] -> [B, K]
        x = nn.Conv(self.hidden, (self.patch, self.patch), strides=(self.patch, self.patch), padding="VALID",
                    name="embedding")(x)
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)
        cls = self.param("cls", nn.initializers.zeros, (1, 1, d))
        x = jnp.concatenate([jnp.tile(cls, (b, 1, 1)), x], axis=1)
        x = x + self.param("pos_embedding", nn.initializers.normal(0.02), (1, x.shape[1], d))
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        L = self.num_layers
        for i in range(L):
            rate = self.stochastic_depth * i / (L - 1) if L > 1 else 0.0
            x = Encoder1DBlock(self.mlp_dim, self.num_heads, self.dropout, self.attention_dropout, rate,
                               name=f"encoderblock_{i}")(x, train)
        x = nn.LayerNorm(epsilon=1e-6, name="encoder_norm")(x)[:, 0]
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="output_projection")(x)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ints = lambda s: tuple(int(v) for v in s.split(","))
    p.add_argument("--image", type=ints, default=(1, 28, 28), help="C,H,W (run as NHWC)")
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    model = ViT(a.classes, a.patch, a.hidden, a.mlp, a.heads, a.layers, a.dropout, a.attention_dropout,
                a.stochastic_depth)
    c, h, w = a.image
    key = jax.random.PRNGKey(a.seed)
    k_init, k_x, k_y, k_drop = jax.random.split(key, 4)
    x = jax.random.normal(k_x, (a.batch, h, w, c), jnp.float32)
    labels = jax.random.randint(k_y, (a.batch,), 0, a.classes)
    params = model.init({"params": k_init}, x[:1], train=False)["params"]
    num_params = sum(int(v.size) for v in jax.tree_util.tree_leaves(params))

    mask = jax.tree_util.tree_map(lambda v: v.ndim > 1, params)
    chain = [optax.clip_by_global_norm(a.max_grad_norm)] if a.max_grad_norm is not None else []
    tx = optax.chain(*chain, optax.adamw(a.lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=a.weight_decay, mask=mask))
    opt_state = tx.init(params)
    one_hot = jax.nn.one_hot(labels, a.classes)
    targets = optax.smooth_labels(one_hot, a.label_smoothing) if a.label_smoothing else one_hot

    def metrics(logits, sums):
        acc = jnp.sum(jnp.argmax(logits, -1) == labels)
        loss = jnp.sum(optax.softmax_cross_entropy(logits, one_hot))
        return sums[0] + acc, sums[1] + loss

    def train_step(params, opt_state, sums, rng):
        rng, step_rng = jax.random.split(rng)

        def loss_fn(p):
            logits = model.apply({"params": p}, x, train=True, rngs={"dropout": step_rng})
            return jnp.mean(optax.softmax_cross_entropy(logits, targets)), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        grad_norm = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, metrics(logits, sums), rng, loss, grad_norm

    def eval_step(params, sums):
        return metrics(model.apply({"params": params}, x, train=False), sums)

    train = a.mode == "train"
    train_jit = jax.jit(train_step, donate_argnums=(0, 1, 2))
    eval_jit = jax.jit(eval_step, donate_argnums=(1,))
    state = {"params": params, "opt": opt_state, "sums": (jnp.zeros(()), jnp.zeros(())), "rng": k_drop, "loss": None}

    def step():
        if train:
            s = state
            s["params"], s["opt"], s["sums"], s["rng"], s["loss"], _ = train_jit(s["params"], s["opt"], s["sums"],
                                                                                  s["rng"])
            jax.block_until_ready(s["loss"])
        else:
            state["sums"] = eval_jit(state["params"], state["sums"])
            jax.block_until_ready(state["sums"])

    times, rss = time_steps(step, max(a.warmup, 1), a.steps)  # the first call compiles
    report("jax_jit", a.mode, a.batch, num_params, times, rss, a.json, device=str(jax.devices()[0]),
           gpu_peak_allocated_mib=gpu_peak_mib(),
           last_loss=float(state["loss"]) if state["loss"] is not None else 0.0, jax=jax.__version__,
           xla_flags=os.environ.get("XLA_FLAGS", ""))


if __name__ == "__main__":
    main()
