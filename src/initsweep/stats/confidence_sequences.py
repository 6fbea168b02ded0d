"""An anytime-valid test of a bounded mean: the betting e-process (test supermartingale).

I. Waudby-Smith and A. Ramdas, "Estimating means of bounded random variables by betting",
Journal of the Royal Statistical Society B 86(1), 2024 (arXiv 2010.09686, 2020), sections 3-5:
to test H0: E[x] <= m for observations x_1, x_2, ... in [-R, R] with that conditional mean given
the past, map them to y = (x + R) / (2 R) in [0, 1] (H0: E[y] <= mu0 = (m + R) / (2 R)) and bet
a predictable fraction lambda_t in [0, 1 / mu0) of one's capital on y_t exceeding mu0:

    K_t = prod over i <= t of (1 + lambda_i (y_i - mu0)).

Under H0 every factor has conditional expectation <= 1 and is >= 0, so K is a nonnegative
supermartingale with K_0 = 1, and by Ville's inequality P(K_t >= 1 / alpha for some t) <= alpha:
the test "reject once K_t >= 1 / alpha" keeps its level however often it is looked at, and
whenever one stops or goes on (optional stopping and continuation). K_t is an e-value at every
t; the confidence sequence of the paper is the set of m whose K_t(m) is still below 1 / alpha.

The bet is the paper's "approximate GRAPA" (aGRAPA, section 5.3): lambda_t = (mu_t - mu0) /
(sigma2_t + (mu_t - mu0)^2), the growth-rate-optimal fraction for the running (predictable)
mean mu_t and variance sigma2_t of the y's seen before, clipped to [0, cap / mu0]. The running
estimates start from the prior (mu0, ``prior_var``) with weight 1, as the paper's start from
(1/2, 1/4), but with a smaller prior variance: the race sees at most tens of observations of
differences that are small against the bound, and the paper's 1/4 keeps the bets tiny for all
of them. Any predictable lambda in [0, 1/mu0) is valid; the choice only moves the power.

The price of assuming nothing but the bound: a factor is at most y / mu0 = (1 + x / R) / (1 + m
/ R), so a difference of 0.05 on an accuracy (R = 1) grows the capital by at most 1.05 a seed and
cannot reach 1 / alpha = 10 in fewer than 48 seeds; a collapse (x near 0.8) reaches it in 4.
docs/race.md measures what this costs a race.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

CAP = 0.9  # lambda <= CAP / mu0: a factor never drops below 1 - CAP
PRIOR_VAR = 0.01  # prior variance of y (sd 0.1 of the [0, 1] range), weight 1


@dataclass
class BettingEProcess:
    """Sequential e-values for H0: E[x] <= margin, x in [-bound, bound] (module docstring).

    ``update(x)`` takes the next observation (its bet was fixed by the previous ones) and returns
    the new e-value; ``e`` is the current one (1 before any observation).
    """

    margin: float = 0.0
    bound: float = 1.0
    cap: float = CAP
    prior_var: float = PRIOR_VAR
    log_e: float = 0.0
    n: int = 0
    _sum: float = 0.0
    _sq: float = 0.0

    def __post_init__(self) -> None:
        if not self.bound > 0 or not -self.bound < self.margin < self.bound:
            raise ValueError(
                f"need bound > 0 and -bound < margin < bound, got bound "
                f"{self.bound}, margin {self.margin}"
            )

    @property
    def mu0(self) -> float:
        return (self.margin + self.bound) / (2 * self.bound)

    @property
    def e(self) -> float:
        return math.exp(self.log_e)

    def bet(self) -> float:
        """The fraction lambda for the next observation (predictable: from the past only)."""
        mu = (self.mu0 + self._sum) / (1 + self.n)
        var = (self.prior_var + self._sq) / (1 + self.n)
        edge = mu - self.mu0
        return float(np.clip(edge / (var + edge * edge), 0.0, self.cap / self.mu0))

    def update(self, x: float) -> float:
        y = min(max((x + self.bound) / (2 * self.bound), 0.0), 1.0)
        lam = self.bet()
        self.log_e += math.log1p(lam * (y - self.mu0))
        mu_before = (self.mu0 + self._sum) / (1 + self.n)
        self._sq += (y - mu_before) ** 2
        self._sum += y
        self.n += 1
        return self.e


def betting_e_values(
    x: ArrayLike,
    margin: float = 0.0,
    bound: float = 1.0,
    cap: float = CAP,
    prior_var: float = PRIOR_VAR,
) -> np.ndarray:
    """``BettingEProcess`` along the last axis, vectorized over the leading ones: the e-value
    after each observation (same shape as ``x``)."""
    x = np.asarray(x, dtype=float)
    mu0 = (margin + bound) / (2 * bound)
    y = np.clip((x + bound) / (2 * bound), 0.0, 1.0)
    log_e = np.zeros(x.shape[:-1])
    total, squares = np.zeros(x.shape[:-1]), np.zeros(x.shape[:-1])
    out = np.empty(x.shape)
    for t in range(x.shape[-1]):
        mu = (mu0 + total) / (1 + t)
        var = (prior_var + squares) / (1 + t)
        edge = mu - mu0
        lam = np.clip(edge / (var + edge * edge), 0.0, cap / mu0)
        log_e = log_e + np.log1p(lam * (y[..., t] - mu0))
        squares = squares + (y[..., t] - mu) ** 2
        total = total + y[..., t]
        out[..., t] = np.exp(log_e)
    return out
