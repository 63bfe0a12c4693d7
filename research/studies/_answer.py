"""The README's answer paragraph (between its answer markers), from the same result files as
docs/verdict.md: what the seed CNN gains over the seed MLP where each is measured best, what the
shuffle and the shifts do, and the invariance study's sentence. Written by research.studies.verdict.
"""
import textwrap

from research.studies import _rules
from research.studies.verdict import Results, cell, pct
from research.sweeps import report

THAN = {"n.s.": "no better than", "> 0": "better than", "< 0": "worse than"}  # a gap's verdict


def _pp_first(d) -> str:
  """'+1.11 pp [+0.99, +1.24]'; '-0.27 pp, n.s.' when the interval contains zero."""
  if d["verdict"] == "n.s.":
    return f"{100 * d['diff']:+.2f} pp, n.s."
  value, interval = report.fmt_diff(d["diff"], d["low"], d["high"]).split(" ", 1)
  return f"{value} pp {interval}"


def _join(items: list[str]) -> str:
  return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def answer(results: Results) -> str:
  """The README's answer paragraph, from the harder, translation and shuffled summaries."""
  harder, translation = results.summary("harder"), results.summary("translation")
  shuffled = results.summary("shuffled")
  gaps = {(g["a"], g["condition"]): g for g in harder["gaps"] if g["b"] == "mlp"}
  canvas = {g["a"]: g for g in translation["canvas_gaps"]}
  sources = {label: (study, conv, condition)
             for label, study, conv, condition in _rules.harder_sources(results)}

  def source(label, a=None, b="mlp"):
    if label not in sources:
      return None
    study, conv, condition = sources[label]
    return _rules.source_gap(results, study, a or conv, b, condition)

  clutter_study, _, clutter_condition = sources.get("cluttered MNIST 60x60", ("", "", ""))
  clutter_where = "cluttered 60x60 ones" + (
      f" after {clutter_condition.rsplit(', ', 1)[-1]}" if clutter_study == "cluttered" else "")
  cnn = [(gaps.get(("cnn", "MNIST")), "MNIST"), (source("Fashion-MNIST"), "Fashion-MNIST"),
         (canvas.get("cnn"), "digits placed anywhere on a 40x40 canvas"),
         (source("cluttered MNIST 60x60"), clutter_where)]
  cnn = [(g, where) for g, where in cnn if g]
  wins = all(g["verdict"] == "> 0" for g, _ in cnn)
  items = [f"{_pp_first(g)} on {where}" for g, where in cnn]
  text = (f"**The answer, measured** ([docs/verdict.md](docs/verdict.md): every claim of the "
          f"seeds, its verdict and numbers, written by `python -m research.studies.verdict` from "
          f"the studies of [docs/results.md](docs/results.md); {_rules.protocol(results)}; 95% "
          "intervals, each uncorrected; the verdict's tests are Holm-corrected). As functions, "
          "yes: every convolution *is* a dense layer with a sparse, tied matrix and every dense "
          "layer *is* a convolution covering its "
          "whole input, exactly (`research/equivalence.py`). ")
  text += ("As learners, no: at equal budgets the seed CNN beats the seed MLP by " if wins else
           "As learners, it depends: at equal budgets the seed CNN − seed MLP is ") + _join(items)
  params = source("cluttered MNIST 60x60", "cnn", "mlp_params")
  if params and cnn and cnn[-1][1] == clutter_where:
    text += f" ({_pp_first(params)} over an MLP with its parameters)"
  lcn = (source("cluttered MNIST 60x60", "lcn_narrow") if clutter_study == "cluttered" else
         gaps.get(("lcn", "cluttered MNIST 60x60")))
  if lcn and cnn and cnn[-1][1] == clutter_where:
    than = THAN[lcn["verdict"]]
    narrow = " (at half the CNN's widths)" if clutter_study == "cluttered" else ""
    key = ("lcn_narrow" if clutter_study == "cluttered" else "lcn", clutter_condition)
    marker = results.cell_info(clutter_study or "harder").get(key, {}).get("marker") or {}
    rising = ", still rising at the end" if marker.get("under_trained") else ""
    text += (f", where a locally connected net without shared weights{narrow} is {than} the seed "
             f"MLP ({_pp_first(lcn)}{rising})")
    # the cluttered study's MLP of about the half-width LCN's parameters (its multiply-adds
    # match the half-width CNN's): locality without sharing against a dense net of its size
    sized = (source("cluttered MNIST 60x60", "lcn_narrow", "mlp_flops_narrow")
             if clutter_study == "cluttered" else None)
    if sized:
      text += f" and {THAN[sized['verdict']]} an MLP of about its parameters ({_pp_first(sized)})"
  one_d = source("MNIST-1D")
  if one_d:
    verb = "beats an MLP by" if one_d["verdict"] == "> 0" else "differs from an MLP by"
    recipe = (" (its paper's models and recipe)" if sources["MNIST-1D"][0] == "mnist1d" else "")
    text += f", and a 1-D CNN {verb} {_pp_first(one_d)} on MNIST-1D{recipe}"
  text += "."
  vs_flops = {g["condition"]: g for g in harder["gaps"] if (g["a"], g["b"]) == ("cnn", "mlp_flops")}
  matched = [(vs_flops[where], where) for where in ("MNIST", "Fashion-MNIST") if where in vs_flops]
  if matched:
    cells = results.cell_info("harder")
    rising = [where for _, where in matched
              if (cells.get(("mlp_flops", where), {}).get("marker") or {}).get("under_trained")]
    closed = all(g["verdict"] == "> 0" for g, _ in matched)
    text += (" An MLP as large as the CNN's computation (its multiply-adds per image) " +
             ("narrows the gap without closing it: CNN − that MLP " if closed else
              "against the CNN: CNN − that MLP ") +
             _join([f"{_pp_first(g)} on {where}" for g, where in matched]) +
             (f" (that MLP still rising at the end on {_join(rising)})" if rising else "") + ".")
  shuffle = _rules.shuffled_condition(results)
  effect = {e["model"]: e for e in shuffled["effects"] if e["what"] == f"{shuffle} − MNIST"}
  retrained = cell(shuffled, "cnn", shuffle)
  collapses = retrained["mean"] < 0.2  # claim 4's rule
  text += (" Retrained on shuffled pixels the CNN collapses" if collapses else
           " But the seeds overstate what the grid gives the CNN: retrained on shuffled pixels it "
           "does not collapse")
  drawn = ", a permutation drawn per seed" if shuffle.endswith("per seed") else ""
  text += (f" ({_pp_first(effect['cnn'])} on MNIST{drawn}, "
           f"{'down to' if collapses else 'still'} "
           f"{pct(retrained['mean'])}; the MLP "
           f"{_pp_first(effect['mlp'])})")
  curves = {(c["model"], c["condition"], int(c["shift"])): c["mean"]
            for c in translation["shift_curves"]}
  if all((m, "MNIST", s) in curves for m in ("mlp", "cnn") for s in (0, 4)):
    invariant = (curves["cnn", "MNIST", 0] - curves["cnn", "MNIST", _rules.SHIFT]
                 < _rules.SHIFT_INVARIANT)  # claim 5's threshold
    text += (f", and {'the CNN is nearly' if invariant else 'neither model is'} translation "
             f"invariant (at a 4 px test shift the CNN keeps "
             f"{report.fmt_interval(curves['cnn', 'MNIST', 4], float('nan'), digits=1)}%, the "
             f"MLP {report.fmt_interval(curves['mlp', 'MNIST', 4], float('nan'), digits=1)}%)")
  text += "." + invariance_sentence(results.optional_summary("invariance"))
  text += locality_sentence(results.optional_summary("locality"))
  return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


def invariance_sentence(summary: dict | None, shift: int = _rules.SHIFT) -> str:
  """' On a canvas that keeps the digit whole, ...': the invariance study's accuracies at a
  `shift` px test shift without augmentation, and the GAP head's drop against the seed CNN's."""
  if not summary:
    return ""
  cond = summary["shift_curves"][0]["condition"]  # the first training: no augmentation
  acc = {c["model"]: c["mean"] for c in summary["shift_curves"]
         if c["condition"] == cond and int(c["shift"]) == shift}
  names = {"cnn_gap": "the CNN with a global-average-pooling head", "cnn": "the seed CNN",
           "mlp_flops": "an MLP with the seed CNN's multiply-adds",
           "mlp_params": "an MLP with its parameters"}
  shown = [f"{names[m]} {pct(acc[m])}" for m in names if m in acc]
  if not shown:
    return ""
  first, _, value = shown[0].rpartition(" ")
  text = (f" On a canvas that keeps the digit whole (40x40, no augmentation), at a {shift} px "
          f"test shift {_join([f'{first} keeps {value}'] + shown[1:])}")
  diff = next((c for c in summary["comparisons"] if (c["a"], c["b"], c["condition"], c["shift"])
               == ("cnn_gap", "cnn", cond, shift)), None)
  if diff:
    text += f" (the GAP head's drop − the seed CNN's: {_pp_first(diff)})"
  return text + "."


def locality_sentence(summary: dict | None) -> str:
  """' A dense layer does not ignore the grid either: ...': the locality study's β-LASSO cells
  (research/studies/locality.tested), original and shuffled-then-un-permuted, against chance."""
  from research.studies import locality
  found = locality.tested(summary) if summary else []
  if len(found) < 2 or not all(c for _, c in found):
    return ""
  (_, bl), (_, shuf) = found
  epochs = f" for {bl['epochs']} epochs" if "epochs" in bl else ""
  share = lambda c: f"{c['locality']:.2f} ({c['chance']:.2f} by chance)"
  return (f" A dense layer does not ignore the grid either: trained with β-LASSO (Neyshabur "
          f"2020, λ = {bl['lam']:g}){epochs}, the first-layer units of a 784-512-10 MLP keep "
          f"{share(bl)} of their weight mass in a 7x7 window of the image, and trained on "
          f"shuffled pixels, then un-permuted, {share(shuf)}: accuracy unchanged by a shuffle "
          f"does not show that Dense ignores spatial structure.")
