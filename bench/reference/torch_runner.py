"""The training / evaluation step of classification_trainer in PyTorch eager, for the
bench/reference/*_torch.py scripts (ResNet, Mixer): forward, softmax cross-entropy
(mean over the batch, optional label smoothing) plus Scenic's `0.5 * l2_decay_factor *
sum(p^2)` over the parameters with ndim > 1 when given, backward, global-norm clipping
when given (else the norm is only computed, as our trainer logs it), optimizer step,
accuracy and loss sums kept on the device. Eval: no_grad forward + the same metrics.
Timing and output: bench_common.
"""
import contextlib

import torch
import torch.nn.functional as F

import bench_common
from bench_common import report, time_steps


def add_common_args(p):
    bench_common.add_common_args(p)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_autocast_arg(p)


def add_autocast_arg(p):
    p.add_argument("--autocast", choices=["none", "bf16"], default="none",
                   help="bf16: the forward under torch.autocast (bfloat16), as scenic's autocast_dtype: bfloat16")


def autocast(a, device_type):
    """The forward's context: torch.autocast in bfloat16 with --autocast bf16, else nothing
    (the loss and the metrics run on the float32 logits, as in classification_trainer)."""
    if a.autocast == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def loss_fn(logits, labels, params, label_smoothing=0.0, l2_decay_factor=None):
    loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    if l2_decay_factor:
        loss = loss + 0.5 * l2_decay_factor * sum(p.square().sum() for p in params if p.dim() > 1)
    return loss


def gpu_peak(dev):
    """(reset, read) for the CUDA caching allocator's peak allocated MiB, as `scenic bench`
    reports it (reset after the warm-up); on the CPU read gives -1."""
    if dev.type != "cuda":
        return None, lambda: -1.0
    return (lambda: torch.cuda.reset_peak_memory_stats(dev),
            lambda: torch.cuda.max_memory_allocated(dev) / 2.0**20)


def run(a, model, optimizer, l2_decay_factor=None):
    """Times model's step with args `a` (add_common_args); prints the result."""
    dev = torch.device(a.device)
    model = model.to(dev)
    params = list(model.parameters())
    num_params = sum(p.numel() for p in params)
    x = torch.randn((a.batch,) + a.image, device=dev)
    labels = torch.randint(a.classes, (a.batch,), device=dev)
    train = a.mode == "train"
    sums = [torch.zeros((), device=dev), torch.zeros((), device=dev)]
    state = {"loss": None}

    def metrics(logits):
        with torch.no_grad():
            sums[0] += (logits.argmax(-1) == labels).sum()
            sums[1] += F.cross_entropy(logits, labels, reduction="sum")

    def step():
        if not train:
            with torch.no_grad():
                with autocast(a, dev.type):
                    logits = model(x)
                metrics(logits.float())
        else:
            optimizer.zero_grad(set_to_none=True)
            with autocast(a, dev.type):
                logits = model(x)
            logits = logits.float()
            loss = loss_fn(logits, labels, params, a.label_smoothing, l2_decay_factor)
            loss.backward()
            if a.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, a.max_grad_norm)
            else:
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
            optimizer.step()
            metrics(logits.detach())
            state["loss"] = loss.detach()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    model.train(train)
    reset_gpu, read_gpu = gpu_peak(dev)
    times, rss = time_steps(step, a.warmup, a.steps, reset_gpu)
    return report("torch_eager", a.mode, a.batch, num_params, times, rss, a.json, device=str(dev),
                  gpu_peak_allocated_mib=read_gpu(),
                  threads=torch.get_num_threads(),
                  last_loss=float(state["loss"]) if state["loss"] is not None else 0.0, torch=torch.__version__)
