"""The verdict's rules: the family of tests the claims are judged by, Holm's correction over
it, the under-trained marker of every cell a test uses, and the rule of each claim.

The study modules gather each claim's evidence (`claims(results)`); the verdict is decided here,
for every claim at once, so the family of tests is one list that Holm's procedure corrects
(family-wise error rate `verdict.ALPHA`). A test whose cells are under-trained (still rising by
more than their own interval over the last 20% of training) leaves the family: it carries no
verdict. Equivalence claims are judged by TOST with a stated margin (`verdict.MARGINS`).
"""
import dataclasses
import os

import numpy as np

from research import stats
from research.sweeps import report


@dataclasses.dataclass
class Test:
  claim: int
  what: str
  kind: str  # difference | equivalence | threshold | range
  result: dict
  cells: list  # (study, model, condition)
  usable: bool = True
  adjusted: float = float("nan")
  reject: bool = False

  @property
  def p(self) -> float:
    return self.result["p"]

  def line(self, size: int, note: str = "") -> str:
    r = self.result
    if self.kind == "equivalence":
      numbers = (f"{100 * r['diff']:+.2f} pp, 90% interval [{100 * r['low']:+.2f}, "
                 f"{100 * r['high']:+.2f}] against the margin ±{100 * r['margin']:.1f} pp (TOST)")
    elif self.kind == "difference":
      numbers = f"{100 * r['diff']:+.2f} pp (Welch)"
    elif r.get("unit") == "share":
      numbers = f"mean locality − chance {r['mean']:+.3f} over seeds"
    elif r.get("unit") == "pp":
      numbers = f"mean {100 * r['mean']:.2f} pp"
    else:
      numbers = f"mean {100 * r['mean']:.2f}%"
    note = f" Cells: {note}." if note else ""
    if not self.usable:
      return f"{self.what}: {numbers}; not judged: a cell is under-trained.{note}"
    word = "rejected" if self.reject else "not rejected"
    return (f"{self.what}: {numbers}; p = {self.p:.2g}, Holm-adjusted {self.adjusted:.2g} over "
            f"the family of {size}: H0 {word} at {100 * ALPHA():.0f}% family-wise.{note}")


def ALPHA() -> float:
  from research.studies import verdict
  return verdict.ALPHA


def family(results) -> list[Test]:
  """Every test a verdict rests on, from the studies' results.csv."""
  from research.studies.verdict import MARGINS
  h, s, t = "harder", "shuffled", "tabular"
  acc = results.acc
  out = [Test(1, "H0: seed CNN = seed MLP on MNIST", "difference",
              stats.difference_test(acc(h, "cnn", "MNIST"), acc(h, "mlp", "MNIST")),
              [(h, "cnn", "MNIST"), (h, "mlp", "MNIST")]),
         Test(2, "H0: the seed MLP's mean on MNIST lies outside [97, 98.5]%", "range",
              stats.range_test(acc(h, "mlp", "MNIST"), 0.97, 0.985), [(h, "mlp", "MNIST")])]
  shuffle = shuffled_condition(results)
  shuf, orig = acc(s, "mlp", shuffle), acc(s, "mlp", "MNIST")
  cells = [(s, "mlp", "MNIST"), (s, "mlp", shuffle)]
  out += [Test(3, "H0: the MLP's shuffle change on MNIST is at least the margin", "equivalence",
               stats.tost(shuf, orig, MARGINS[3]), cells),
          Test(3, "H0: the MLP's shuffle change on MNIST is 0", "difference",
               stats.difference_test(shuf, orig), cells)]
  m = stats.mean_test(acc(s, "cnn", shuffle), 0.2)
  out.append(Test(4, "H0: the CNN retrained on shuffled MNIST averages 20%", "threshold",
                  {**m, "p": min(1.0, 2 * min(m["p_below"], m["p_above"]))},
                  [(s, "cnn", shuffle)]))
  drops = {m: shift_drops(results, m) for m in ("mlp", "cnn")}
  cells = [("translation", "cnn", "MNIST"), ("translation", "mlp", "MNIST")]
  m = stats.mean_test(drops["cnn"], SHIFT_INVARIANT)
  out += [Test(5, "H0: the MLP and the CNN lose as much at a 4 px test shift (per-seed drops)",
               "difference", stats.difference_test(drops["mlp"], drops["cnn"]), cells),
          Test(5, f"H0: the CNN's per-seed drop at a 4 px test shift averages "
               f"{100 * SHIFT_INVARIANT:.0f} pp", "threshold",
               {**m, "unit": "pp", "p": min(1.0, 2 * min(m["p_below"], m["p_above"]))},
               cells[:1])]
  for label, study, conv, condition in harder_sources(results):
    out.append(Test(7, f"H0: {conv} = MLP on {label}", "difference",
                    stats.difference_test(acc(study, conv, condition),
                                          acc(study, "mlp", condition)),
                    [(study, conv, condition), (study, "mlp", condition)]))
  from research.studies import locality
  out += locality.verdict_tests(results)
  conv, mlp = acc(t, "cnn1d", "original columns"), acc(t, "mlp", "original columns")
  cells = [(t, "cnn1d", "original columns"), (t, "mlp", "original columns")]
  out += [Test(8, "H0: |1-D CNN − MLP| on the table is at least the margin", "equivalence",
               stats.tost(conv, mlp, MARGINS[8]), cells),
          Test(8, "H0: 1-D CNN = MLP on the table", "difference",
               stats.difference_test(conv, mlp), cells)]
  return out


def shuffled_condition(results) -> str:
  """The shuffled study's condition claims 3 and 5 are tested on: a permutation drawn per seed
  (its intervals cover the draw) where the MLP and the CNN have run on it, else the one fixed
  permutation."""
  per_seed = "MNIST shuffled per seed"
  ran = all(len(results.acc("shuffled", m, per_seed)) > 1 for m in ("mlp", "cnn"))
  return per_seed if ran else "MNIST shuffled"


def harder_sources(results) -> list[tuple[str, str, str, str]]:
  """Claim 8's comparisons, (dataset, study, conv model, condition), each from the study that
  trains it best where that study has run: MNIST-1D from its paper's recipe (docs/studies/
  mnist1d), cluttered MNIST from the budget study (docs/studies/cluttered) at the longest budget
  at which the CNN and the MLP both plateaued (the longest both ran, if none); else the harder
  study's cells at its equal budget."""
  h = "harder"
  found = [("Fashion-MNIST", h, "cnn", "Fashion-MNIST")]
  cluttered = results.optional_summary("cluttered")
  both = {}
  for c in (cluttered or {}).get("cells", []):
    if c["model"] in ("cnn", "mlp"):
      both.setdefault(c["epochs"], []).append(c)
  both = {e: cells for e, cells in both.items() if len(cells) == 2}
  if both:
    flat = [e for e, cells in both.items() if not any(c["under_trained"] for c in cells)]
    epochs = max(flat or both)
    found.append(("cluttered MNIST 60x60", "cluttered", "cnn", both[epochs][0]["condition"]))
  elif len(results.acc(h, "cnn", "cluttered MNIST 60x60")):
    found.append(("cluttered MNIST 60x60", h, "cnn", "cluttered MNIST 60x60"))
  if results.optional_summary("mnist1d") is not None:
    found.append(("MNIST-1D", "mnist1d", "cnn", "MNIST-1D"))
  elif len(results.acc(h, "cnn1d", "MNIST-1D")):
    found.append(("MNIST-1D", h, "cnn1d", "MNIST-1D"))
  return found


def source_gap(results, study: str, a: str, b: str, condition: str) -> dict | None:
  """Welch's 95% interval of a − b in one study's condition ({diff, low, high, verdict}), or
  None where either cell is missing."""
  xa, xb = results.acc(study, a, condition), results.acc(study, b, condition)
  if not (len(xa) and len(xb)):
    return None
  d, low, high = report.diff_interval(xa, xb)
  return {"diff": d, "low": low, "high": high, "verdict": report.verdict(low, high),
          "n": (len(xa), len(xb))}


def cells_note(results, cells) -> str:
  """What a test's cells trained: 'cnn 5 seeds, mlp 5 seeds; 2,145 steps of batch 128 (5
  epochs), adam cosine; plateaued' (each cell's budget where they differ)."""
  cells = list(dict.fromkeys(cells))
  repeated = len({model for _, model, _ in cells}) < len(cells)
  info = [(f"{model} on {condition}" if repeated else model,
           results.cell_info(study)[model, condition]) for study, model, condition in cells]
  seeds = ", ".join(f"{m} {c['n']} seeds" for m, c in info)
  budgets = list(dict.fromkeys(c["budget"] for _, c in info))
  budget = budgets[0] if len(budgets) == 1 else "; ".join(f"{m} {c['budget']}" for m, c in info)
  rising = [m for m, c in info if c["marker"] and c["marker"]["under_trained"]]
  unknown = [m for m, c in info if not c["marker"]]
  state = (f"under-trained: {', '.join(rising)}" if rising else
           f"plateau not measured: {', '.join(unknown)}" if unknown else "plateaued")
  return f"{seeds}; {budget}; {state}"


SHIFT = 4  # px: claim 5's test shift
SHIFT_INVARIANT = 0.02  # a drop below 2 pp at that shift: translation invariant (claim 5)


def shift_drops(results, model: str, shift: int = SHIFT):
  """Per seed, the translation study's run of `model` on MNIST (no augmentation): its test
  accuracy minus its accuracy on test images shifted by `shift` px (mean over the directions
  of configs/sweeps/translation.py), from translation's results.csv."""
  f = results.csv("translation")
  mine = f[(f["model"] == model) & (f["condition"] == "MNIST")]
  base = mine[mine["status"] != "eval"].groupby("seed")["test_accuracy"].mean()
  shifted = mine[(mine["status"] == "eval") & (mine["shift"] == shift)].groupby(
      "seed")["test_accuracy"].mean()
  seeds = sorted(set(base.index) & set(shifted.index))
  return np.array([base[s] - shifted[s] for s in seeds], np.float64)


def correct(tests: list[Test], results) -> list[Test]:
  """Marks tests on under-trained cells unusable, then Holm over the usable ones."""
  for test in tests:
    markers = [results.cell_info(study).get((model, condition), {}).get("marker")
               for study, model, condition in test.cells]
    test.usable = not any(m and m["under_trained"] for m in markers)
  usable = [x for x in tests if x.usable]
  for test, h in zip(usable, stats.holm([x.p for x in usable], ALPHA())):
    test.adjusted, test.reject = h["adjusted"], h["reject"]
  return tests


def exact_conversion() -> bool:
  """Whether a random conv equals its dense matrix (research/equivalence.conv_to_dense) here."""
  import jax
  from research import equivalence
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, 6, 2)).astype(np.float32)
  k, b = rng.normal(size=(3, 3, 2, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
  w, bias, shape = equivalence.conv_to_dense(k, b, (6, 6, 2))
  conv = jax.lax.conv_general_dilated(x, k, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
  dense = x.reshape(2, -1) @ np.asarray(w) + np.asarray(bias)
  return bool(np.allclose(np.asarray(conv).reshape(2, -1), dense, atol=1e-4))


def _one(tests, claim, kind="difference"):
  found = [t for t in tests if t.claim == claim and t.kind == kind]
  return found[0] if found else None


def decide(claim, tests: list[Test], results) -> tuple[str, str]:
  """(verdict, rule) of claim `claim.order` from the corrected family."""
  n = int(claim.order) if float(claim.order).is_integer() else None  # 3.5: another study's
  t1 = _one(tests, 1)
  if n in (1, 2, 3, 4, 5, 7, 8):
    mine = [t for t in tests if t.claim == n]
    if not any(t.usable for t in mine):
      return ("not judged (under-trained)", "a cell of its test is under-trained: it carries "
              "no verdict until trained longer.")
  if n == 1:
    verdict = ("undetermined" if not t1.reject else "does not hold" if t1.result["diff"] < 0
               else "holds" if t1.result["diff"] >= 0.01 else "holds in part")
    return verdict, ("holds if H0 (CNN = MLP) is rejected and the CNN leads by at least 1 pp; "
                     "holds in part if rejected with a smaller lead; does not hold if the MLP "
                     "leads; undetermined if not rejected.")
  if n == 2:
    t = _one(tests, 2, "range")
    inside = 0.97 <= t.result["mean"] <= 0.985
    return ("holds" if t.reject else "not contradicted" if inside else "does not hold",
            "holds if the mean is shown inside [97, 98.5]% (both one-sided tests rejected); not "
            "contradicted if the mean is inside but not shown; else does not hold.")
  if n in (3, 8):
    eq, diff = _one(tests, n, "equivalence"), _one(tests, n, "difference")
    margin = f"±{100 * eq.result['margin']:.1f} pp"
    if n == 3:
      verdict = ("holds" if eq.reject else "does not hold" if diff.reject else "not contradicted")
      return verdict, (f"holds if the MLP's change is shown equivalent to zero within {margin} "
                       "(TOST); does not hold if a change is shown (H0 = 0 rejected); else not "
                       "contradicted (neither shown).")
    conv_worse = diff.reject and diff.result["diff"] < 0
    verdict = ("holds" if eq.reject or conv_worse else "does not hold" if diff.reject
               else "not contradicted")
    return verdict, (f"holds if the 1-D CNN is shown equivalent to the MLP within {margin} "
                     "(TOST) or shown worse; does not hold if shown better; else not "
                     "contradicted. The margin is about one test example (0.88 pp). The "
                     "test split (113 examples) is fixed: the seeds' intervals do not cover "
                     "its sampling error.")
  if n == 4:
    t = _one(tests, 4, "threshold")
    verdict = ("undetermined" if not t.reject else "holds" if t.result["mean"] < 0.2
               else "does not hold")
    return verdict, ("judged on the seed's own experiment, the CNN retrained on shuffled "
                     "images: holds if its mean is shown below 20% (near the 10% of chance); "
                     "does not hold if shown above; else undetermined. The CNN tested on "
                     "shuffled images without retraining is context, not the claim.")
  if n == 5:
    diff, low = _one(tests, 5), _one(tests, 5, "threshold")
    mlp_more = diff.reject and diff.result["diff"] > 0
    invariant = low.usable and low.reject and low.result["mean"] < SHIFT_INVARIANT
    verdict = ("holds" if mlp_more and invariant else "holds in part" if mlp_more else
               "does not hold" if diff.reject else "undetermined")
    limit = f"{100 * SHIFT_INVARIANT:.0f} pp"
    return verdict, (f"judged on each seed's drop at a {SHIFT} px test shift (no augmentation): "
                     f"holds if the MLP is shown to lose more than the CNN (Welch) and the "
                     f"CNN's drop is shown below {limit} (one-sample test: built in); holds in "
                     f"part if the MLP is shown to lose more but the CNN's drop is not shown "
                     f"below {limit}; does not hold if the CNN is shown to lose more; else "
                     "undetermined.")
  if n == 6:
    params = results.csv("params")
    layer = lambda m, name: params[(params["model"] == m) & (params["layer"] == name)][
        "params"].iloc[0]
    ratio = layer("mlp", "Dense_0") / layer("cnn", "Conv_0")
    totals = params.groupby("model")["params"].sum()
    model_ratio = totals["mlp"] / totals["cnn"]
    not_worse = t1.usable and not (t1.reject and t1.result["diff"] < 0)
    verdict = ("does not hold" if round(ratio) != 314 or not not_worse else
               "holds" if model_ratio >= 314 else "holds in part")
    return verdict, (f"holds if the layers' ratio is 314x and a CNN with 314x fewer parameters "
                     f"than the MLP it is compared with is not worse (claim 1's test); holds in "
                     f"part if the ratio is 314x but the models compared differ by "
                     f"{model_ratio:.1f}x ({totals['mlp']:,} vs {totals['cnn']:,}); does not "
                     "hold if the count is wrong or the CNN is worse.")
  if n == 7:
    mine = [t for t in tests if t.claim == 7 and t.usable]
    big = [t for t in mine if t.reject and t.result["diff"] >= 0.05]
    return ("holds" if mine and len(big) == len(mine) else "holds in part" if big
            else "does not hold"), (
        "holds if on every harder dataset measured here (and not under-trained) H0 conv = MLP "
        "is rejected with a conv lead of at least 5 pp; holds in part if on some; else does "
        "not hold.")
  if n == 9:
    exact, differs = exact_conversion(), t1.usable and t1.reject
    verdict = ("holds in part" if exact and differs else "holds" if differs else
               "does not hold" if exact else "undetermined")
    return verdict, ("the function-level half is judged by the exact conversion (computed "
                     "now: a random conv against its dense matrix), the learning-level half by "
                     "claim 1's test: holds in part if the conversion is exact and the two learn "
                     "differently; holds if it is not exact and they differ; does not hold if "
                     "exact and they do not.")
  mine = [t for t in tests if t.claim == claim.order]
  if claim.order == 3.5 and mine:
    if not any(t.usable for t in mine):
      return ("not judged (under-trained)", "a cell of its test is under-trained: it carries "
              "no verdict until trained longer.")
    local = [t.usable and t.reject for t in mine] + [False]
    verdict = ("does not hold" if local[0] and local[1] else "holds in part" if local[0]
               else "not contradicted")
    return verdict, ("does not hold if the β-LASSO dense net's first layer is shown more local "
                     "than its chance level (one-sided t test of the per-seed locality − "
                     "chance) both on MNIST and on shuffled MNIST un-permuted: the dense layer "
                     "recovers the grid from the correlations alone; holds in part if only on "
                     "MNIST; else not contradicted. The architecture has no built-in notion of "
                     "adjacency either way: what is judged is whether a dense layer ignores it.")
  # A claim this module has no rule for (another study's) keeps its study's rule: no test of
  # the family stands behind it.
  return claim.verdict, claim.rule + (" (Its study's own rule, outside the verdict's family of "
                                      "Holm-corrected tests.)")


def judge(found: list, results) -> list[Test]:
  """Decides every claim's verdict from the corrected family; adds each claim's tests to its
  evidence. Returns the family."""
  tests = correct(family(results), results)
  size = sum(t.usable for t in tests)
  for claim in found:
    claim.verdict, claim.rule = decide(claim, tests, results)
    claim.evidence += [t.line(size, cells_note(results, t.cells)) for t in tests
                       if t.claim == claim.order]
  return tests


def budget(config: dict, cell) -> str:
  """'2,145 steps of batch 128 (5 epochs), adam cosine' from a run's config and its rows (the
  studies' tables say it the same way: studies.budget)."""
  from research import studies
  return studies.budget(config, cell["steps"].iloc[0])


def rate(config: dict, cell, how: str | None = None) -> str:
  """The cell's learning rate and how it was set: as its study's summary says (`how`), else
  chosen on a validation split where its runs had one, else fixed."""
  rates = ", ".join(f"{v:g}" for v in sorted(set(cell["learning_rate"])))
  chosen = config.get("validation_size", 0) > 0 and cell["validation_accuracy"].notna().all()
  return f"{rates} ({how or ('chosen on a validation split' if chosen else 'fixed')})"


def protocol(results, cited=("harder", "shuffled", "translation")) -> str:
  """How the cited studies trained, from their cells: seeds per model and how the rates were
  set ('5 seeds (lcn 3), equal epochs within a dataset, learning rates chosen on a validation
  split')."""
  cells = {k: c for study in cited for k, c in results.cell_info(study).items()}
  seeds = {}
  for (model, _), c in cells.items():
    seeds.setdefault(c["n"], set()).add(model)
  common = max(seeds, key=lambda n: len(seeds[n]))
  others = ", ".join(f"{'/'.join(sorted(m)).upper()} {n}" for n, m in seeds.items() if n != common)
  chosen = [c["rate"].endswith("(chosen on a validation split)") for c in cells.values()]
  rates = ("learning rates chosen on a validation split" if all(chosen) else "fixed learning "
           "rates" if not any(chosen) else "learning rates chosen on a validation split for "
           f"{sum(chosen)} of {len(chosen)} cells, fixed for the others")
  by_rate = {}
  for study, name in (("rethinking", "rethinking"), ("efcn", "eFCN"),
                      ("mnist1d", "MNIST-1D")):
    if not os.path.isfile(os.path.join(results.studies_dir, study, "runs.jsonl")):
      continue
    info = results.cell_info(study).values()
    if not any(c["rate"].endswith("(chosen on a validation split)") for c in info):
      rate = ", ".join(sorted({c["rate"].split(" (")[0] for c in info}))
      by_rate.setdefault(rate, []).append(name)
  rest = ("; fixed rates in " + ", ".join(
      f"the {' and '.join(names)} {'studies' if len(names) > 1 else 'study'} ({rate})"
      for rate, names in by_rate.items()) if by_rate else "")
  return (f"{common} seeds per model{f' ({others})' if others else ''}, equal epochs within a "
          f"dataset, {rates}{rest}")


def cells_table(results, tests: list[Test]) -> list[str]:
  """Every cell a test uses: seeds, budget, learning rate, accuracy and its under-trained mark."""
  lines = ["| study | model | condition | seeds | budget | learning rate | test accuracy (%, "
           "95% CI) | under-trained? |", "|---|---|---|---|---|---|---|---|"]
  seen = dict.fromkeys(c for t in tests for c in t.cells)
  for study, model, condition in seen:
    c = results.cell_info(study)[model, condition]
    lines.append(f"| {study} | {model} | {condition} | {c['n']} | {c['budget']} | {c['rate']} | "
                 f"{report.fmt_interval(c['mean'], c['ci95'])} | "
                 f"{report.under_trained_mark(c['marker'])} |")
  return lines
