"""The classification_trainer step as one jitted JAX function, for the
bench/reference/*_jax.py scripts (ResNet, Mixer): forward, softmax cross-entropy (mean,
optional label smoothing) plus Scenic's 0.5 * l2_decay_factor * sum(p^2) over the
parameters with ndim > 1 when given, grads, optax transform (clipping inside `tx` when
wanted), BatchNorm statistics carried as a mutable collection when the model has them,
accuracy and loss sums on the device.
Parameters, optimizer state and sums are donated so XLA updates them in place. Inputs
are NHWC, as in Scenic. The first warm-up call compiles. Timing and output: bench_common.
"""
import os

import jax
import jax.numpy as jnp
import optax

from bench_common import add_common_args, report, time_steps  # noqa: F401 (re-exported)


def gpu_peak_mib():
    """The accelerator's peak bytes in use, in MiB, from XLA's allocator (JAX cannot reset
    it, so it covers the compile and the warm-up too); -1 on the CPU."""
    dev = jax.devices()[0]
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    return stats["peak_bytes_in_use"] / 2.0**20 if stats and "peak_bytes_in_use" in stats else -1.0


def clip_then(a, tx):
    return optax.chain(optax.clip_by_global_norm(a.max_grad_norm), tx) if a.max_grad_norm is not None else tx


def run(a, model, tx, l2_decay_factor=None):
    c, h, w = a.image
    k_init, k_x, k_y, k_drop = jax.random.split(jax.random.PRNGKey(a.seed), 4)
    x = jax.random.normal(k_x, (a.batch, h, w, c), jnp.float32)
    labels = jax.random.randint(k_y, (a.batch,), 0, a.classes)
    variables = model.init({"params": k_init}, x[:1], train=False)
    params = variables["params"]
    stats = variables.get("batch_stats", {})
    has_stats = "batch_stats" in variables
    num_params = sum(int(v.size) for v in jax.tree_util.tree_leaves(params))
    one_hot = jax.nn.one_hot(labels, a.classes)
    targets = optax.smooth_labels(one_hot, a.label_smoothing) if a.label_smoothing else one_hot
    opt_state = tx.init(params)

    def metrics(logits, sums):
        return (sums[0] + jnp.sum(jnp.argmax(logits, -1) == labels),
                sums[1] + jnp.sum(optax.softmax_cross_entropy(logits, one_hot)))

    def apply(p, s, train, rng):
        v = {"params": p, "batch_stats": s} if has_stats else {"params": p}
        if train and has_stats:
            logits, new = model.apply(v, x, train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
            return logits, new["batch_stats"]
        return model.apply(v, x, train=train, rngs={"dropout": rng}), s

    def train_step(params, stats, opt_state, sums, rng):
        rng, step_rng = jax.random.split(rng)

        def loss_fn(p):
            logits, new_stats = apply(p, stats, True, step_rng)
            loss = jnp.mean(optax.softmax_cross_entropy(logits, targets))
            if l2_decay_factor:
                leaves = jax.tree_util.tree_leaves(p)
                loss = loss + 0.5 * l2_decay_factor * sum(jnp.sum(v * v) for v in leaves if v.ndim > 1)
            return loss, (logits, new_stats)

        (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        grad_norm = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, metrics(logits, sums), rng, loss, grad_norm

    def eval_step(params, stats, sums):
        return metrics(apply(params, stats, False, k_drop)[0], sums)

    train = a.mode == "train"
    train_jit = jax.jit(train_step, donate_argnums=(0, 1, 2, 3))
    eval_jit = jax.jit(eval_step, donate_argnums=(2,))
    st = {"p": params, "s": stats, "o": opt_state, "sums": (jnp.zeros(()), jnp.zeros(())), "rng": k_drop, "loss": None}

    def step():
        if train:
            st["p"], st["s"], st["o"], st["sums"], st["rng"], st["loss"], _ = train_jit(st["p"], st["s"], st["o"],
                                                                                        st["sums"], st["rng"])
            jax.block_until_ready(st["loss"])
        else:
            st["sums"] = eval_jit(st["p"], st["s"], st["sums"])
            jax.block_until_ready(st["sums"])

    times, rss = time_steps(step, max(a.warmup, 1), a.steps)
    return report("jax_jit", a.mode, a.batch, num_params, times, rss, a.json, device=str(jax.devices()[0]),
                  gpu_peak_allocated_mib=gpu_peak_mib(),
                  last_loss=float(st["loss"]) if st["loss"] is not None else 0.0, jax=jax.__version__,
                  xla_flags=os.environ.get("XLA_FLAGS", ""))
