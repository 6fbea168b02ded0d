"""Multiple testing: Holm's step-down adjustment of p-values, the per-hypothesis level it tests
each one at (for intervals that agree with its calls), and its e-value form (e-Holm), numpy only.

Used by the report's verdicts (``holm``, ``holm_levels``) and by the race (``e_holm`` over the
configurations' e-processes, valid under optional stopping).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm-adjusted p-values along the last axis (Holm 1979); NaN entries are not hypotheses.

    The procedure (S. Holm, "A simple sequentially rejective multiple test procedure",
    Scandinavian Journal of Statistics 6(2), 1979): sort the m p-values, p_(1) <= ... <= p_(m);
    reject H_(1), H_(2), ... for as long as p_(i) <= alpha / (m - i + 1), and stop at the first
    that fails. This keeps the family-wise error rate (the chance of rejecting any true
    hypothesis) at or below alpha for any dependence between the tests, and rejects everything
    Bonferroni (p <= alpha / m) rejects, and more.

    The adjusted p-value carries the whole procedure in one number per hypothesis, so that
    ``holm(p) <= alpha`` is exactly Holm's rejection set at level alpha, for every alpha:
    ``adj_(i) = max over j <= i of min(1, (m - j + 1) p_(j))``.

    ``p_values`` may have leading axes (each row is its own family, e.g. simulation
    replicates); m counts the finite entries of the row, and NaN entries stay NaN.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim == 0:
        return np.minimum(p, 1.0)
    finite = np.isfinite(p)
    m = finite.sum(axis=-1, keepdims=True)
    order = np.argsort(np.where(finite, p, np.inf), axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1)
    position = np.arange(p.shape[-1])  # 0-based rank i - 1
    factor = m - position  # m - i + 1
    scaled = np.where(np.isfinite(ranked), np.minimum(1.0, factor * ranked), -np.inf)
    stepped = np.maximum.accumulate(scaled, axis=-1)
    adjusted = np.empty_like(p)
    np.put_along_axis(adjusted, order, stepped, axis=-1)
    return np.where(finite, adjusted, np.nan)


def holm_levels(p_values: ArrayLike, alpha: float) -> np.ndarray:
    """The level at which Holm's procedure tests each hypothesis (last axis), for intervals that
    agree with its calls: a two-sided interval at confidence 1 - level excludes the null value
    exactly when ``holm(p) <= alpha`` (for tests that invert their intervals).

    With r hypotheses rejected: the one of rank i <= r (p sorted) is tested at alpha / (m - i + 1);
    every one not rejected at alpha / (m - r), the level the next rejection would need. NaN
    entries are not hypotheses and get NaN.
    """
    p = np.asarray(p_values, dtype=float)
    squeeze = p.ndim == 0
    p = np.atleast_1d(p)
    finite = np.isfinite(p)
    m = finite.sum(axis=-1, keepdims=True)
    rejected = np.isfinite(p) & (holm(p) <= alpha)
    r = rejected.sum(axis=-1, keepdims=True)
    order = np.argsort(np.where(finite, p, np.inf), axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(p.shape[-1]), p.shape), axis=-1)
    level = np.where(rejected, alpha / np.maximum(m - rank, 1), alpha / np.maximum(m - r, 1))
    level = np.where(finite, level, np.nan)
    return level[0] if squeeze else level


def e_holm(e_values: ArrayLike) -> np.ndarray:
    """e-Holm adjusted e-values along the last axis: reject hypothesis k at level alpha when the
    result is >= 1 / alpha, with the family-wise error rate at most alpha.

    Vovk & Wang, "E-values: calibration, combination and applications", Annals of Statistics
    49(3), 2021, section 5 ("e-Holm"): the closed testing procedure whose test of an intersection
    of hypotheses I is the arithmetic mean of their e-values (the mean of e-values is an e-value
    under any dependence). The closure's shortcut: hypothesis k is rejected when every I that
    contains it has mean >= 1 / alpha, i.e. when

        min over s = 1..m of (e_k + the s - 1 smallest of the other e-values) / s >= 1 / alpha,

    and that minimum is the adjusted e-value. When the e-values are the current values of
    e-processes (test supermartingales on one filtration, e.g. a race's rounds), the mean over
    the true hypotheses is itself a test supermartingale, so by Ville's inequality the guarantee
    holds at every time at once: under optional stopping and continuation (Vovk & Wang 2021,
    and Ramdas, Grunwald, Vovk & Shafer, "Game-theoretic statistics and safe anytime-valid
    inference", Statistical Science 38(4), 2023). NaN entries are not hypotheses.
    """
    e = np.asarray(e_values, dtype=float)
    out = np.full(e.shape, np.nan)
    for index in np.ndindex(e.shape[:-1]):
        row = e[index]
        live = np.flatnonzero(np.isfinite(row))
        for k in live:
            others = np.sort(row[live[live != k]])
            sums = row[k] + np.concatenate(([0.0], np.cumsum(others)))
            out[index + (k,)] = float(np.min(sums / np.arange(1, len(sums) + 1)))
    return out
