"""Multiple comparisons: Holm's step-down adjustment, numpy only.

Imported by the report's pairwise verdicts and meant for any caller that tests several
hypotheses at once (e.g. a sweeper that races configurations in the launching process): it
imports nothing but numpy, so it costs no start-up time and pulls in neither torch nor MLflow.
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
