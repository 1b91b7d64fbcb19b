"""Units per candidate as a count distribution, and what follows from it for stock and orders.

The demand model (:mod:`launch_pipeline.demand`) gives each candidate an *expected* revenue over
the horizon and one error distribution shared by all candidates (realised / predicted on the
shop's past launches). Merchandisers need whole units, intervals that say how sure we are about
*this* product, and an order quantity. This module turns the expectation into a negative binomial
(gamma-Poisson) count of units per candidate:

* units ~ Poisson(mu_j * G), G ~ Gamma(shape k, mean 1), i.e. NB(mean mu_j, shape k);
  ``mu_j`` = the expected units (expected revenue / price, or ``sum_i r_ij x units per purchase``
  without a demand model);
* ``k`` (the shop's launch-to-launch spread) is fitted to the demand model's errors on past
  launches: the gamma whose quantiles best match its realised / predicted quantiles (replayed
  out of sample, see :mod:`launch_pipeline.demand`; :func:`gamma_shape_from_ratios`); without a demand model ``k`` is large (Poisson: the spread of a
  sum of independent purchases);
* intervals are whole units and differ by product: a product expected to sell 2 units has an 80%
  interval like 0-5, one expected to sell 200 like 120-300 (relatively narrower);
* **with a demand model** the 80% interval and the median are its calibrated bounds themselves
  (:func:`conformal_units`): ``mu_j`` x the split-conformal 10/50/90% quantiles of realised /
  predicted on replayed past launches, as whole units (the same launches inside). A mean-1 gamma cannot
  match such skewed quantiles (on Online Retail 10/50/90% of 0.06-0.10 / 1.0-1.5 / 7-11), so
  turning them into a negative binomial lost the coverage they were calibrated for (0.55-0.65 for
  an 80% interval); the negative binomial is still what the stock and order numbers use.

From the distribution: expected sales capped by stock ``E[min(D, S)]``
(:func:`expected_capped`), and the newsvendor order quantity (:func:`newsvendor_quantity`): the
smallest ``Q`` with ``P(D <= Q) >= (p - c) / (p - s c)`` where ``s`` is the share of the unit
cost recovered for an unsold unit (``salvage_share``, default 0: **unsold units of the initial
order are assumed to be worth nothing**; set it to e.g. 0.5 if leftovers can be cleared at half
cost). The order never exceeds the stock available.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import stats

MAX_SHAPE = 1e4
"""Shape of the gamma at which the negative binomial is treated as Poisson."""


@dataclass(frozen=True)
class UnitsDistribution:
    """NB(mean, shape) units over the horizon (``shape >= MAX_SHAPE``: Poisson)."""

    mean: float
    shape: float

    @cached_property
    def _frozen(self):
        return self._make()

    def _dist(self):
        return self._frozen

    def _make(self):
        m = max(float(self.mean), 0.0)
        if m <= 0:
            return None
        if self.shape >= MAX_SHAPE:
            return stats.poisson(m)
        k = float(self.shape)
        return stats.nbinom(k, k / (k + m))

    def quantile(self, q: float) -> int:
        d = self._dist()
        return 0 if d is None else int(d.ppf(q))

    def cdf(self, x: float) -> float:
        d = self._dist()
        return 1.0 if d is None else float(d.cdf(x))

    def expected_capped(self, cap: float | None) -> float:
        """``E[min(D, cap)]`` (``cap`` None or not finite: ``E[D]``)."""
        m = max(float(self.mean), 0.0)
        d = self._dist()
        if d is None or cap is None or not np.isfinite(cap):
            return m
        c = int(max(np.floor(cap), 0))
        if c == 0:
            return 0.0
        # E[min(D, c)] = sum_{x=0}^{c-1} P(D > x)
        return float(d.sf(np.arange(c)).sum())

    def expected_leftover(self, q: float) -> float:
        """``E[(q - D)+]``: units of an order of ``q`` left unsold at the end of the horizon."""
        return max(float(q), 0.0) - self.expected_capped(q)


def gamma_shape_from_ratios(quantiles: dict[str, float]) -> float:
    """Shape ``k`` of the mean-1 gamma whose quantiles best match the demand model's realised /
    predicted quantiles on past launches (``p10``, ``p50``, ``p90``; least squares on the log
    scale over the positive ones, on a grid of ``k`` from 0.05 to ``MAX_SHAPE``). The median
    of a mean-1 gamma rises with ``k`` and its 90th percentile is not monotone, so both matter.
    No usable quantile: ``MAX_SHAPE`` (Poisson)."""
    targets = {
        float(q[1:]) / 100: float(v)
        for q, v in quantiles.items()
        if q in ("p10", "p50", "p90") and v is not None and np.isfinite(v) and v > 0
    }
    if not targets:
        return MAX_SHAPE
    grid = np.exp(np.linspace(np.log(0.05), np.log(MAX_SHAPE), 400))
    probs = np.array(sorted(targets))
    want = np.log([targets[p] for p in probs])
    got = np.log(
        np.maximum(stats.gamma.ppf(probs[None, :], grid[:, None], scale=1.0 / grid[:, None]), 1e-12)
    )
    return float(grid[int(np.argmin(((got - want[None, :]) ** 2).sum(axis=1)))])


def conformal_units(mean_units: float, quantiles: dict[str, float]) -> tuple[int, int, int]:
    """Whole-unit ``(p10, p50, p90)`` of a candidate expected to sell ``mean_units`` from the
    demand model's calibrated quantiles of realised / predicted (``p10``, ``p50``, ``p90``).

    A whole number of units ``u`` lies in ``[mu q10, mu q90]`` exactly when it lies in
    ``[ceil(mu q10), floor(mu q90)]``, so those are the bounds: the same launches fall inside as
    in the calibrated interval (rounding outwards would add coverage the calibration did not
    ask for). When no whole number lies inside (a tiny expectation), both bounds are
    ``floor(mu q90)``. The median is ``round(mu q50)`` kept inside. A missing or non-finite
    bound: ``0`` below, the expectation above."""
    mu = max(float(np.nan_to_num(mean_units)), 0.0)

    def q(name: str, default: float) -> float:
        v = quantiles.get(name)
        return float(v) if v is not None and np.isfinite(v) and v >= 0 else default

    hi = int(np.floor(mu * q("p90", 1.0) + 1e-9))
    lo = min(int(np.ceil(mu * q("p10", 0.0) - 1e-9)), hi)
    mid = int(np.clip(np.floor(mu * q("p50", 1.0) + 0.5), lo, hi))
    return lo, mid, hi


def critical_ratio(price: float, unit_cost: float | None, salvage_share: float = 0.0) -> float:
    """Newsvendor critical ratio ``(p - c) / (p - s c)``; 0.5 when the cost is unknown (order
    the median), 0 when the product sells at or below cost."""
    if unit_cost is None or not np.isfinite(unit_cost) or not np.isfinite(price) or price <= 0:
        return 0.5
    under = price - unit_cost  # margin lost per unit short
    over = unit_cost * (1.0 - salvage_share)  # cost lost per unit left over
    if under <= 0:
        return 0.0
    return float(under / (under + max(over, 0.0)))


def newsvendor_quantity(
    dist: UnitsDistribution,
    price: float,
    unit_cost: float | None,
    stock: float | None = None,
    salvage_share: float = 0.0,
) -> int:
    """Smallest whole ``Q`` with ``P(D <= Q) >= critical ratio``, at most ``stock``."""
    cr = critical_ratio(price, unit_cost, salvage_share)
    q = 0 if cr <= 0 else dist.quantile(min(cr, 0.999))
    if stock is not None and np.isfinite(stock):
        q = min(q, int(max(stock, 0)))
    return int(max(q, 0))


@dataclass(frozen=True)
class UnitsForecast:
    """One candidate's forecast in whole, coherent units."""

    expected_demand: float  # E[D], units
    expected_units: float  # E[min(D, stock)]: expected units sold
    units_p10: int
    units_p50: int
    units_p90: int
    order_quantity: int
    expected_leftover: float  # E[(order - D)+]
    expected_order_sales: float  # E[min(D, order)]
    stock_limited: bool  # P(D > stock) >= 10%
    expected_buyers: float  # never above expected_units (a purchase is >= 1 unit)


def forecast_units(
    mean_units: float,
    shape: float,
    price: float,
    unit_cost: float | None,
    stock: float | None,
    units_per_purchase: float = 1.0,
    buyers_from_preferences: float | None = None,
    salvage_share: float = 0.0,
    ratio_quantiles: dict[str, float] | None = None,
) -> UnitsForecast:
    """The count distribution of one candidate and the numbers a merchandiser reads from it.

    ``ratio_quantiles`` (the demand model's calibrated quantiles of realised / predicted): the
    units' p10 / p50 / p90 are :func:`conformal_units` instead of the negative binomial's.
    ``expected_buyers`` is the units forecast divided by the units per purchase (at least 1), or
    the preference-based ``sum_i r_ij`` when that is smaller: either way never above the units."""
    dist = UnitsDistribution(max(float(np.nan_to_num(mean_units)), 0.0), float(shape))
    cap = float(stock) if stock is not None and np.isfinite(stock) else None
    sold = dist.expected_capped(cap)
    if ratio_quantiles:
        p10, p50, p90 = conformal_units(dist.mean, ratio_quantiles)
    else:
        p10, p50, p90 = (dist.quantile(q) for q in (0.1, 0.5, 0.9))
    if cap is not None:
        p10, p50, p90 = (min(v, int(cap)) for v in (p10, p50, p90))
    order = newsvendor_quantity(dist, price, unit_cost, cap, salvage_share)
    if cap is None or cap >= 1:
        order = max(order, 1)  # a launch needs at least one unit on the shelf
    per = max(float(units_per_purchase or 1.0), 1.0)
    buyers = sold / per
    if buyers_from_preferences is not None and np.isfinite(buyers_from_preferences):
        buyers = min(buyers, float(buyers_from_preferences))
    return UnitsForecast(
        expected_demand=dist.mean,
        expected_units=sold,
        units_p10=int(p10),
        units_p50=int(p50),
        units_p90=int(p90),
        order_quantity=order,
        expected_leftover=dist.expected_leftover(order),
        expected_order_sales=dist.expected_capped(order),
        stock_limited=cap is not None and (1.0 - dist.cdf(cap)) >= 0.1,
        expected_buyers=min(buyers, sold),
    )
