"""The confidence intervals the studies' verdicts rest on (one implementation for all)."""

import numpy as np
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


def t_interval(x, level=0.95):
    """(mean, low, high): the Student-t interval of the mean of ``x`` (one value per trial)."""
    x = np.asarray(x, float).ravel()
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (exact at 0 and n, unlike Wald's)."""
    phat = successes / n
    centre = (phat + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


__all__ = ["Z95", "t_interval", "wilson_interval"]
