"""Statistics for the comparison over seeds (pure Python; no scipy on the CPU image).

- :func:`t_quantile`: Student-t quantile (regularized incomplete beta + bisection).
- :func:`mean_ci`: mean and two-sided t-interval of a few per-seed values.
- :func:`paired_difference`: per-seed differences of a variant to the baseline, with their t-interval.
- :func:`wilson`: Wilson score interval of a pooled success rate (RGR repairs).
"""

from __future__ import annotations

import math
from statistics import NormalDist


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df!r}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def mean_ci(values: list[float], conf: float = 0.95) -> dict:
    """Mean, sample standard deviation and the two-sided ``conf`` t-interval of the mean.

    Non-finite values are dropped. One value gives an infinite interval (no spread to estimate).
    Returns {"n", "mean", "sd", "half", "lo", "hi"} (NaN everywhere when there is no value).
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(vals)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "sd": nan, "half": nan, "lo": nan, "hi": nan}
    m = sum(vals) / n
    if n == 1:
        return {"n": 1, "mean": m, "sd": float("nan"), "half": float("inf"), "lo": -math.inf, "hi": math.inf}
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1))
    half = t_quantile(0.5 + conf / 2.0, n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": m, "sd": sd, "half": half, "lo": m - half, "hi": m + half}


def paired_difference(variant: dict[int, float], baseline: dict[int, float], conf: float = 0.95) -> dict:
    """``variant[seed] - baseline[seed]`` over the seeds both have, and the t-interval of their mean.

    Pairing by seed removes what the seed does to both runs (same data order, sampling streams
    and initial noise), so the interval is usually much narrower than the two unpaired ones.
    """
    seeds = sorted(set(variant) & set(baseline))
    diffs = [variant[s] - baseline[s] for s in seeds]
    return {"seeds": seeds, "diffs": diffs, **mean_ci(diffs, conf)}


def wilson(successes: float, trials: float, conf: float = 0.95) -> dict:
    """Wilson score interval of a binomial rate: {"rate", "lo", "hi", "n"}."""
    if trials <= 0:
        nan = float("nan")
        return {"rate": nan, "lo": nan, "hi": nan, "n": 0}
    z = NormalDist().inv_cdf(0.5 + conf / 2.0)
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return {"rate": p, "lo": max(0.0, centre - half), "hi": min(1.0, centre + half), "n": trials}


def fmt_ci(stat: dict, digits: int = 3) -> str:
    """``mean [lo, hi]`` (or ``mean`` alone for one value, ``–`` for none)."""
    if not stat or stat.get("n", 0) == 0 or not math.isfinite(stat.get("mean", float("nan"))):
        return "–"
    if not math.isfinite(stat["half"]):
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} [{stat['lo']:.{digits}f}, {stat['hi']:.{digits}f}]"
