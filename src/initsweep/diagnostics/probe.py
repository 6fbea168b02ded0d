"""Why an init fails: per-layer signal, gradient and symmetry measurements on a fixed probe batch.

Measured at init (before the first step), every ``every_n_steps`` steps and at the end of training,
per weight layer i of any network (Linear, Conv1d/2d/3d, Embedding, in ``weight_layers`` order:
the index the initializer's generators and ``init.layers`` rules use):

  diag/L{i}/weight_norm               ||W|| (S4: zero layers turn non-zero from the output back)
  diag/L{i}/preact_mean, preact_std   the layer's output on the probe batch
  diag/L{i}/act_mean, act_std         after the activation module that follows it (before the next
                                      weight layer, past any norm or pooling); the layer's output
                                      if none does (the logits, a residual branch's last conv)
  diag/L{i}/std_ratio                 act_std / std of the layer's own input (S3: >1 explodes)
  diag/L{i}/grad_norm                 ||dL/dW|| on the probe batch (backward signal)
  diag/L{i}/update_ratio              ||W_after - W_before|| / ||W_before|| for that step
  diag/L{i}/dead_frac                 units never active after a ReLU on the probe batch
  diag/L{i}/saturated_frac            tanh |a| > 1 - eps, sigmoid a < eps or a > 1 - eps (entries)
  diag/L{i}/distinct_units            rows of W distinct up to a tolerance (S0, S4: 1 = symmetric)
  diag/L{i}/effective_rank            exp(entropy of normalized singular values) of the activations
  diag/L{i}/norm_weight_mean          the normalization layer after it (BatchNorm, ...): mean gamma
  diag/L{i}/norm_running_mean         mean |running mean| of its channels (BatchNorm only)
  diag/L{i}/norm_running_var          mean running variance of its channels (BatchNorm only)

A unit is an output feature of a Linear or Embedding, a channel (a filter) of a conv layer: a
conv's dead_frac counts channels inactive at every position of every probe sample, its
distinct_units counts distinct filters (rows of W flattened to (out, in * kernel)), and its
effective rank is that of the (samples x positions, channels) activation matrix. The norm_*
measures are NaN (not logged) where no normalization layer follows the weight layer.

Metric names keep the layer index: it orders the layers by depth in MLflow's UI (``L10`` after
``L9`` in a plot's legend, not after ``L1``), stays short, and means the same for every model, so
the report compares an MLP's sweep with a CNN's. The module path of each index is in every row of
``diagnostics.csv`` (``path``, ``type``) and labels the plots.

The probe batch goes through the network as a training step would see it (``probe_mode``):
BatchNorm normalizes with the batch's statistics (its running statistics are put back after),
dropout is off.

``diagnostics.callback.DiagnosticsCallback`` takes these measurements during training, logs them
and writes the same numbers to ``diagnostics.csv`` (one row per step and layer) for analysis
without plots. Everything here runs under ``torch.no_grad`` except the probe gradient, which uses
``torch.autograd.grad`` so the training gradients are never touched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initsweep.models.layers import NORM_LAYER_TYPES, WEIGHT_LAYER_TYPES, weight_layers, weight_of

LAYER_METRICS = (
    "weight_norm",
    "preact_mean",
    "preact_std",
    "act_mean",
    "act_std",
    "std_ratio",
    "grad_norm",
    "update_ratio",
    "dead_frac",
    "saturated_frac",
    "distinct_units",
    "effective_rank",
    "norm_weight_mean",
    "norm_running_mean",
    "norm_running_var",
)
# What names the layer of a record: its module path in the network and its class.
LAYER_FIELDS = ("path", "type")
# The columns of diagnostics.csv and the keys of every record, in this order.
RECORD_FIELDS = ("step", "layer", *LAYER_METRICS, *LAYER_FIELDS)
# Modules whose output counts as "the activation" of the weight layer before them.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
)
_RELU_TYPES = (nn.ReLU, nn.ReLU6)


def distinct_rows(weight: Tensor, tol: float = 1e-6) -> int:
    """Rows of ``weight`` not within ``tol`` (relative to the row norms) of an earlier row."""
    w = weight.detach().float().reshape(weight.shape[0], -1)
    dist = torch.cdist(w, w)
    scale = w.norm(dim=1).max().clamp_min(1e-12)
    close_to_earlier = torch.triu(dist <= tol * scale, diagonal=1).any(dim=0)
    return int((~close_to_earlier).sum())


def effective_rank(activations: Tensor) -> float:
    """Roy & Vetterli 2007: exp(H(p)), p = singular values / their sum; 1 for rank 1, 0 for 0."""
    a = activations.detach().float()
    if not torch.isfinite(a).all():
        return math.nan
    if a.shape[0] > 4 * a.shape[1] and a.shape[0] > 4096:
        # A tall (samples x positions, channels) conv matrix: the singular values from the
        # small Gram matrix's eigenvalues, at a fraction of an SVD of the whole matrix.
        gram = a.double().T @ a.double()
        s = torch.linalg.eigvalsh(gram).clamp_min(0).sqrt().float()
    else:
        s = torch.linalg.svdvals(a)
    if float(s.sum()) <= 0:
        return 0.0  # all-zero activations: no direction at all
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _units(layer: nn.Module, out: Tensor) -> Tensor:
    """``out`` as a (rows, units) matrix: a conv's channels (dim 1) are its units, over samples
    and positions; a Linear's or Embedding's last dimension, over everything else."""
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and out.dim() > 2:
        return out.movedim(1, -1).reshape(-1, out.shape[1])
    return out.reshape(-1, out.shape[-1]) if out.dim() != 2 else out


def _leaves(net: nn.Module) -> list[nn.Module]:
    """The modules a forward pass is traced through: leaves, and weight layers in any case."""
    return [
        m
        for m in net.modules()
        if isinstance(m, WEIGHT_LAYER_TYPES) or next(m.children(), None) is None
    ]


def measure(
    net: nn.Module, x: Tensor, y: Tensor, saturation_eps: float = 0.01, distinct_tol: float = 1e-6
) -> list[dict[str, Any]]:
    """Forward/backward statistics of every weight layer on the probe batch ``(x, y)``.

    One forward pass, traced by hooks on the leaf modules in the order they run: each weight
    layer's input and output (its first call), the activation module that follows it before the
    next weight layer runs, and the normalization layer between them (if any).
    """
    named = weight_layers(net)
    layers = [m for _, m in named]
    weight_ids = {id(m) for m in layers}
    calls: list[tuple[nn.Module, Tensor, Tensor]] = []

    def record(module: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
        if isinstance(out, Tensor) and inputs and isinstance(inputs[0], Tensor):
            calls.append((module, inputs[0], out))

    hooks = [m.register_forward_hook(record) for m in _leaves(net)]
    try:
        with torch.enable_grad():
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            finite = bool(torch.isfinite(loss))
            grads: Sequence[Tensor | None] = (
                torch.autograd.grad(loss, [weight_of(layer) for layer in layers], allow_unused=True)
                if finite
                else [None] * len(layers)
            )
    finally:
        for hook in hooks:
            hook.remove()
    first_call: dict[int, int] = {}
    for call, (module, _, _) in enumerate(calls):
        first_call.setdefault(id(module), call)
    rows: list[dict[str, Any]] = []
    for i, (path, layer) in enumerate(named):
        position = first_call.get(id(layer))
        weight = weight_of(layer)
        if position is None:  # a layer the forward pass never reached: nothing to measure
            rows.append(
                {
                    **dict.fromkeys(LAYER_METRICS, math.nan),
                    "weight_norm": float(weight.detach().norm()),
                    "distinct_units": float(distinct_rows(weight, distinct_tol)),
                    "path": path,
                    "type": type(layer).__name__,
                }
            )
            continue
        _, inputs, pre = calls[position]
        pre = pre.detach()
        activation, act, norm = None, pre, None
        for module, _, out in calls[position + 1 :]:
            if id(module) in weight_ids:
                break
            if norm is None and isinstance(module, NORM_LAYER_TYPES):
                norm = module
            if isinstance(module, ACTIVATION_TYPES):
                activation, act = module, out.detach()
                break
        input_std = float(inputs.detach().float().std())
        act_std = float(act.std())
        units = _units(layer, act)
        grad = grads[i]
        row: dict[str, Any] = {
            "weight_norm": float(weight.detach().norm()),
            "preact_mean": float(pre.mean()),
            "preact_std": float(pre.std()),
            "act_mean": float(act.mean()),
            "act_std": act_std,
            "std_ratio": act_std / input_std if input_std > 0 else math.nan,
            "grad_norm": float(grad.norm()) if grad is not None else math.nan,
            "dead_frac": float((units <= 0).all(dim=0).float().mean())
            if isinstance(activation, _RELU_TYPES)
            else 0.0,
            "saturated_frac": _saturated_frac(activation, act, saturation_eps),
            "distinct_units": float(distinct_rows(weight, distinct_tol)),
            "effective_rank": effective_rank(units),
            **_norm_stats(norm),
            "path": path,
            "type": type(layer).__name__,
        }
        rows.append(row)
    return rows


@contextmanager
def probe_mode(net: nn.Module) -> Iterator[None]:
    """The network as a training step sees it, without touching it: BatchNorm normalizes with
    the probe batch's own statistics (in eval mode a fresh BatchNorm, running mean 0 and
    variance 1, would pass the signal through unnormalized and hide what it does at init), its
    running statistics put back afterwards; everything else in eval mode (no dropout: no random
    draw that would move the training's random stream)."""
    modes = {m: m.training for m in net.modules()}
    batch_norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{name: b.clone() for name, b in m.named_buffers(recurse=False)} for m in batch_norms]
    net.eval()
    for m in batch_norms:
        m.train()
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(batch_norms, saved, strict=True):
                for name, value in buffers.items():
                    getattr(m, name).copy_(value)
        for module, mode in modes.items():
            module.training = mode


def _norm_stats(norm: nn.Module | None) -> dict[str, float]:
    """Mean gamma and, for BatchNorm, mean |running mean| and mean running variance."""
    weight = getattr(norm, "weight", None)
    mean = getattr(norm, "running_mean", None)
    var = getattr(norm, "running_var", None)
    return {
        "norm_weight_mean": float(weight.detach().mean()) if weight is not None else math.nan,
        "norm_running_mean": float(mean.abs().mean()) if mean is not None else math.nan,
        "norm_running_var": float(var.mean()) if var is not None else math.nan,
    }


def _saturated_frac(activation: nn.Module | None, act: Tensor, eps: float) -> float:
    if isinstance(activation, nn.Tanh):
        return float((act.abs() > 1 - eps).float().mean())
    if isinstance(activation, nn.Sigmoid):
        return float(((act < eps) | (act > 1 - eps)).float().mean())
    return 0.0
