"""Intervals of a mean from a handful of seeds (numpy and scipy only).

``t_interval`` (Student's t) lives in ``differences``; Hall's skewness-corrected t interval is
here. The report chooses between them by measured coverage (docs/report.md).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

CONFIDENCE = 0.95


def skew_corrected_t_interval(
    x: ArrayLike, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Hall's (1992) skewness-corrected t interval of the mean, along the last axis.

    The studentized mean T = sqrt(n) (mean - mu) / s is skewed when the scores are: its
    distribution is Phi(x) + gamma (2x^2 + 1) / (6 sqrt(n)) phi(x) + O(1/n), gamma the scores'
    skewness. P. Hall, "On the removal of skewness by transformation", JRSS B 54 (1992) 221-228,
    removes that term with a monotone transformation, with a = gamma_hat / sqrt(n),

        g(T) = T + a T^2 / 3 + a^2 T^3 / 27 + a / 6 = ((1 + a T / 3)^3 - 1) / a + a / 6,

    and inverts g(T) between the t_{n-1} quantiles: [mean - s/sqrt(n) g^-1(t), mean - s/sqrt(n)
    g^-1(-t)], with g^-1(v) = (3 / a) (cbrt(1 + a (v - a/6)) - 1). With no skew it is Student's
    t interval; a long lower tail moves the interval down, towards where the mean can hide.
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    mean = x.mean(axis=-1)
    sd = x.std(axis=-1, ddof=1)
    third = ((x - mean[..., None]) ** 3).mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(sd > 0, third / np.where(sd > 0, sd, 1.0) ** 3, 0.0) / math.sqrt(n)
    t = stats.t.ppf(0.5 + confidence / 2, n - 1)

    def inverse(v: float) -> np.ndarray:
        small = np.abs(a) < 1e-9
        safe = np.where(small, 1.0, a)
        with np.errstate(invalid="ignore", divide="ignore"):
            exact = 3 / safe * (np.cbrt(1 + safe * (v - safe / 6)) - 1)
        return np.where(small, v - a / 6, exact)

    se = sd / math.sqrt(n)
    return mean - se * inverse(t), mean - se * inverse(-t)
