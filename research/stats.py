"""The tests a verdict rests on, over seeds: Welch's difference test, an equivalence test (TOST)
with a stated margin, a one-sample test against a threshold, Holm's correction over a family of
tests, and the under-trained marker of a cell from its learning curves.

Every function takes accuracies as fractions (0.9712) and returns plain floats and bools, so a
test can check it against numbers worked out by hand. The seeds' variation is what these
intervals measure; the test split is fixed, so they do not cover its own sampling error.
"""
import numpy as np


def _clean(values) -> np.ndarray:
  x = np.asarray(values, np.float64)
  return x[~np.isnan(x)]


def welch(a, b) -> dict:
  """mean(a) - mean(b), its standard error and Welch's degrees of freedom (NaN for < 2 values
  in a group; se 0 when both groups are constant)."""
  a, b = _clean(a), _clean(b)
  d = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
  if len(a) < 2 or len(b) < 2:
    return {"diff": d, "se": float("nan"), "dof": float("nan")}
  va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
  se = float(np.sqrt(va + vb))
  dof = float((va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))) if se else float(
      "inf")
  return {"diff": d, "se": se, "dof": dof}


def _t_sf(t: float, dof: float) -> float:
  """P(T > t) for Student's t with `dof` degrees of freedom."""
  from scipy import stats
  return float(stats.t.sf(t, dof))


def _one_sided(d: float, se: float, dof: float, above: float) -> float:
  """p of H0: true difference <= `above` against H1: > `above`."""
  if se != se or d != d:
    return float("nan")
  if se == 0:
    return 0.0 if d > above else 1.0
  return _t_sf((d - above) / se, dof)


def difference_test(a, b) -> dict:
  """Welch's two-sided test of mean(a) == mean(b): {diff, se, dof, p}."""
  w = welch(a, b)
  p = 2 * min(_one_sided(w["diff"], w["se"], w["dof"], 0.0),
              _one_sided(-w["diff"], w["se"], w["dof"], 0.0))
  return {**w, "p": min(1.0, p) if p == p else p}


def tost(a, b, margin: float, alpha: float = 0.05) -> dict:
  """Two one-sided tests (Schuirmann 1987) of equivalence: H0 |mean(a) - mean(b)| >= margin.

  p is the larger of the two one-sided Welch p values; equivalence is shown when p < alpha,
  which is the same as the (1 - 2 alpha) interval (90% for alpha 0.05) lying inside
  (-margin, +margin). Returns {diff, se, dof, p, low, high (that interval), margin, equivalent}.
  """
  from scipy import stats
  w = welch(a, b)
  p = max(_one_sided(w["diff"], w["se"], w["dof"], -margin),
          _one_sided(-w["diff"], w["se"], w["dof"], -margin))
  half = float(stats.t.ppf(1 - alpha, w["dof"]) * w["se"]) if w["se"] == w["se"] else float("nan")
  return {**w, "p": p, "low": w["diff"] - half, "high": w["diff"] + half, "margin": margin,
          "equivalent": bool(p < alpha)}


def mean_test(values, threshold: float) -> dict:
  """One-sample t tests of the mean against `threshold`: {mean, se, dof, p_below (H1: mean <
  threshold), p_above (H1: mean > threshold)}."""
  x = _clean(values)
  if len(x) < 2:
    return {"mean": float(x.mean()) if len(x) else float("nan"), "se": float("nan"),
            "dof": float("nan"), "p_below": float("nan"), "p_above": float("nan")}
  m, se, dof = float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))), len(x) - 1
  return {"mean": m, "se": se, "dof": dof, "p_below": _one_sided(threshold - m, se, dof, 0.0),
          "p_above": _one_sided(m - threshold, se, dof, 0.0)}


def range_test(values, low: float, high: float) -> dict:
  """Equivalence of a mean to the range [low, high]: both one-sided tests (mean > low, mean <
  high); p the larger. {mean, p, inside (p < 0.05 is for the caller to decide)}."""
  above, below = mean_test(values, low), mean_test(values, high)
  return {"mean": above["mean"], "p": max(above["p_above"], below["p_below"])}


def holm(pvalues: list[float], alpha: float = 0.05) -> list[dict]:
  """Holm-Bonferroni (Holm 1979) over a family: the smallest p is compared with alpha / m, the
  next with alpha / (m - 1), ..., stopping at the first that fails. Returns, in the input order,
  {p, adjusted (Holm's adjusted p: the running max of (m - rank) * p, capped at 1), reject}.
  A NaN p (no test possible) is never rejected and does not count towards m."""
  valid = [i for i, p in enumerate(pvalues) if p == p]
  m = len(valid)
  order = sorted(valid, key=lambda i: pvalues[i])
  adjusted = [float("nan")] * len(pvalues)
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (m - rank) * pvalues[i]))
    adjusted[i] = running
  return [{"p": p, "adjusted": adjusted[i], "reject": adjusted[i] == adjusted[i] and
           adjusted[i] < alpha} for i, p in enumerate(pvalues)]


def accuracy_at(steps, accuracies, step: float) -> float:
  """A learning curve's accuracy at `step`, linear between evaluations; NaN before the first."""
  steps, acc = np.asarray(steps, np.float64), np.asarray(accuracies, np.float64)
  if not len(steps) or step < steps[0]:
    return float("nan")
  return float(np.interp(step, steps, acc))


def late_rise(steps, accuracies, total_steps: float, fraction: float = 0.2) -> float:
  """How much a run's test accuracy rose over its last `fraction` of training: the final
  accuracy minus the accuracy at (1 - fraction) * total_steps (linear between evaluations;
  NaN when the curve has no evaluation that early)."""
  if not len(steps):
    return float("nan")
  order = np.argsort(steps)
  steps, acc = np.asarray(steps)[order], np.asarray(accuracies)[order]
  return float(acc[-1] - accuracy_at(steps, acc, (1 - fraction) * total_steps))


def under_trained(rises, finals, fraction: float = 0.2) -> dict:
  """The under-trained marker of a cell (one value per seed in each list): its test accuracy
  still rose, on average over seeds, by more than the half-width of its own 95% interval over
  the last `fraction` of training. {rise, half, under_trained}; under_trained None when it
  cannot be told (fewer than 2 seeds, or curves without an evaluation that early)."""
  from scipy import stats
  rises, finals = _clean(rises), _clean(finals)
  half = (float(stats.t.ppf(0.975, len(finals) - 1) * finals.std(ddof=1) / np.sqrt(len(finals)))
          if len(finals) > 1 else float("nan"))  # report.t_interval's 95% half-width
  rise = float(rises.mean()) if len(rises) else float("nan")
  if rise != rise or half != half:
    return {"rise": rise, "half": half, "under_trained": None}
  return {"rise": rise, "half": half, "under_trained": bool(rise > half)}
