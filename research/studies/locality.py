"""Locality learned from data: can a dense layer learn to be a convolution?

β-LASSO (Neyshabur 2020; research/optimizers.py) against SGD on the calibration point's dense
net (784 -> 512 -> 10), on MNIST, Fashion-MNIST and MNIST-1D, and the seeds' shuffled-pixels
experiment turned around: the net trained on shuffled pixels, its first layer un-permuted onto
the original grid and measured there (research/locality.py). Grid: configs/sweeps/locality.py.
Writes results.csv, results.md, summary.json, locality_weights.png and locality_curves.png.

  python -m research.studies locality --output_dir docs/studies/locality --runs_dir runs/locality
"""
import json
import os

import numpy as np

from research import locality, studies
from research.studies.verdict import SEED_2, Claim, pct
from research.sweeps import report

# Measured outside the project (the calibration point): 784 -> 512 -> 10, SGD momentum
# 0.9 rate 0.05, batch 128, β = 50, a 7x7 window around each unit's centroid, chance permuted
# among the varying pixels. (epochs, test accuracy, fraction of first-layer weights zero,
# locality, chance)
CALIBRATION = {
    ("mnist", "sgd", None, False): (30, 0.983, None, 0.080, 0.067),
    ("mnist", "beta_lasso", 4e-4, False): (10, 0.977, 0.925, 0.19, 0.09),
    ("mnist", "beta_lasso", 4e-4, True): (10, None, None, 0.18, 0.085),
    ("mnist", "beta_lasso", 1e-3, False): (30, 0.970, 0.994, 0.45, 0.21),
}
DATASETS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "mnist1d": "MNIST-1D"}
MEASURES = ("locality", "chance", "centred", "chance_centred", "rf", "chance_rf", "weights_left")


# The models whose first layer is measured.
DENSE_NETS = {"fc": "784-512-10", "s_fc": "S-FC", "d_fc": "D-FC"}


def describe(config: dict) -> dict:
  """What a run is, read from its config.json."""
  bl = config["optimizer"] == "beta_lasso"
  model = config.get("model", "fc")
  net = {"fc": "fc", "s_fc": f"S-FC α={config.get('fc_alpha')}",
         "d_fc": f"D-FC α={config.get('fc_alpha')}"}.get(model, model.upper())
  return {"model": model, "net": net, "dataset": config["dataset"],
          "optimizer": config["optimizer"],
          "lam": float(config["lasso_lambda"]) if bl else None,
          "learning_rate": float(config["learning_rate"]),
          "shuffled": config["pixel_permutation"] == "train_test",
          "epochs": config["num_epochs"], "window": locality.WINDOW}


def usual_epochs(dataset: str) -> int:
  """The epochs of a dataset's cells in the sweep (other cells' labels name theirs)."""
  from configs.sweeps.locality import EPOCHS, EPOCHS_1D
  return EPOCHS_1D if dataset == "mnist1d" else EPOCHS


def label(d: dict) -> str:
  opt = (f"β-LASSO λ={d['lam']:g}" if d["optimizer"] == "beta_lasso" else
         {"sgd": "SGD", "adam": "Adam"}.get(d["optimizer"], d["optimizer"]))
  net = "" if d.get("net", "fc") == "fc" else f"{d['net']}, "
  usual = usual_epochs(d["dataset"])
  epochs = f", {d['epochs']} epochs" if d.get("epochs", usual) != usual else ""
  return (f"{DATASETS.get(d['dataset'], d['dataset'])}{' shuffled' if d['shuffled'] else ''}, "
          f"{net}{opt}{epochs}")


_VARYING = {}


def final_weights(workdir: str) -> dict:
  """The first layer's measures at the end of training: from the run's final checkpoint
  (research/locality.measure, un-permuted, chance among the varying inputs), else (records
  without checkpoints) its last logged weight metrics, the same numbers less any measure added
  after it ran."""
  w = report.read_metrics(workdir, "weights")
  logged = {k.split("/")[0]: v for k, v in w[-1].items() if k.endswith("/Dense_0")} if w else {}
  try:
    import ml_collections
    from research import data, experiment, transforms
    _, params, config = experiment.load_model(workdir)
  except Exception:  # no checkpoint (rebuilt from the records): the logged numbers
    return logged
  if config.dataset not in _VARYING:
    ds = data.load_dataset(ml_collections.ConfigDict({"dataset": config.dataset,
                                                      "data_dir": config.data_dir}))
    _VARYING[config.dataset] = (ds.image_shape, locality.varying_pixels(ds.train_images))
  shape, varying = _VARYING[config.dataset]
  perm = (transforms.pixel_permutation(shape, config.permutation_seed)
          if config.pixel_permutation == "train_test" else None)
  return {**logged, **locality.measure(np.asarray(params["Dense_0"]["kernel"]), shape,
                                        locality.WINDOW, varying, perm)}


def cells(rows: list[dict]) -> list[dict]:
  """Per condition: accuracy, validation accuracy and the final first-layer measures, mean and
  95% t half-width over seeds; locality − chance as the interval of its per-seed differences."""
  by = {}
  for r in rows:
    with open(os.path.join(r["workdir"], "config.json")) as f:
      d = describe(json.load(f))
    measured = final_weights(r["workdir"]) if d["model"] in DENSE_NETS else {}
    by.setdefault((r["model"], r["condition"]), (d, []))[1].append({**r, **measured})
  out = []
  for (model, condition), (d, runs) in by.items():
    c = {"sweep_model": model, "condition": condition, "label": label(d), **d, "n": len(runs),
         "num_params": runs[0].get("num_params"),
         "seeds": sorted(int(r["seed"]) for r in runs)}
    for m in ("test_accuracy", "validation_accuracy") + MEASURES:
      c[m], c[f"{m}_ci95"] = report.t_interval([r.get(m, np.nan) for r in runs])
    diff = [r.get("locality", np.nan) - r.get("chance", np.nan) for r in runs]
    c["excess"], c["excess_ci95"] = report.t_interval(diff)
    c["excess_seeds"] = [float(x) for x in diff]
    key = (d["dataset"], d["optimizer"], d["lam"], d["shuffled"])
    c["calibration"] = CALIBRATION.get(key) if d["model"] == "fc" else None
    out.append(c)
  return out


def chosen_lambdas(found: list[dict]) -> dict:
  """Per dataset: the λ whose β-LASSO runs on original pixels, at the dataset's usual epochs,
  have the best mean validation accuracy (the test split chooses nothing)."""
  best = {}
  for c in found:
    if (c["optimizer"] == "beta_lasso" and not c["shuffled"] and c.get("model", "fc") == "fc"
        and c["epochs"] == usual_epochs(c["dataset"])):
      if c["dataset"] not in best or c["validation_accuracy"] > best[c["dataset"]][1]:
        best[c["dataset"]] = (c["lam"], c["validation_accuracy"])
  return {k: v[0] for k, v in best.items()}


def conv_reference(window: int = locality.WINDOW) -> float:
  """The maximum: the locality of a 3x3 conv layer's exact dense form (equivalence.conv_to_dense)
  on 28x28, measured the same way (1.0: every unit is a 3x3 patch)."""
  from research import equivalence
  k = np.random.default_rng(0).normal(size=(3, 3, 1, 4)).astype(np.float32)
  dense = equivalence.conv_to_dense(k, None, (28, 28, 1))[0]
  return locality.measure(np.asarray(dense), (28, 28, 1), window)["locality"]


def curves(rows: list[dict]):
  """A frame (condition, label, dataset, net, seed, epoch, locality, chance, weights_left,
  test_accuracy) of the dense nets' runs, one row per evaluation."""
  import pandas as pd
  out = []
  for r in rows:
    with open(os.path.join(r["workdir"], "config.json")) as f:
      config = json.load(f)
    d = describe(config)
    w = report.read_metrics(r["workdir"], "weights")
    if not w:
      continue
    per_epoch = w[-1]["step"] / config["num_epochs"]
    test = {m["step"]: m["accuracy"] for m in report.read_metrics(r["workdir"], "test")}
    for m in w:
      out.append({"condition": r["condition"], "label": label(d), "dataset": d["dataset"],
                  "net": d["net"], "seed": r["seed"], "epoch": m["step"] / per_epoch,
                  **{k: m.get(f"{k}/Dense_0", np.nan) for k in ("locality", "chance")},
                  "weights_left": m.get("weights_left/Dense_0", np.nan),
                  "test_accuracy": test.get(m["step"], np.nan)})
  return pd.DataFrame(out)


def fmt(c: dict, m: str, digits: int = 3) -> str:
  mean, half = c[m], c[f"{m}_ci95"]
  if mean is None or np.isnan(mean):
    return "—"
  return f"{mean:.{digits}f}" + (f" ± {half:.{digits}f}" if not np.isnan(half) else "")


def run(sweep: str | None = None, results_md: str = "", **arguments):
  """The study; `arguments` are engine.run_sweep's (output_dir, runs_dir, executor, seeds, ...).
  Returns the cells."""
  from research.studies import _locality_page as page, _locality_plots as plots
  result = studies.run_grid("locality", sweep, **arguments)
  rows, output_dir, spec = result.rows, result.output_dir, result.spec
  trained = [r for r in rows if r.get("status") not in ("eval", "failed")]
  found = cells(trained)
  budgets = studies.cell_budgets(trained)
  searched = {(r["model"], r["condition"]) for r in spec.get("lr_search_rows", [])}
  follow = spec.get("lr_search", {}).get("follow", {})
  for c in found:  # the verdict tests plateaued cells only (tested), and says how rates were set
    key = (c["sweep_model"], c["condition"])
    marker = budgets.get(key, {}).get("marker") or {}
    c["under_trained"] = bool(marker.get("under_trained"))
    c["rate_how"] = ("chosen on a validation split" if key in searched else
                     "its twin's on original pixels, chosen on a validation split"
                     if (key[0], follow.get(key[1])) in searched else "fixed")
  reference = conv_reference()
  frame = curves(trained)
  plots.plot_curves(frame, os.path.join(output_dir, "locality_curves.png"), reference)
  pictures = plots.plot_weights(trained, os.path.join(output_dir, "locality_weights.png"))
  lambdas = chosen_lambdas(found)
  studies.write_summary(output_dir, {"cells": found, "chosen_lambda": lambdas,
                                     "conv_reference": reference,
                                     "command": report.command_line()})
  by_dataset = {}
  for c in found:
    by_dataset.setdefault(DATASETS.get(c["dataset"], c["dataset"]), set()).add(
        (c["epochs"], tuple(c["seeds"])))
  budget = "; ".join(f"{ds}: " + ", ".join(f"{e} epochs, seeds {list(s)}" for e, s in sorted(v))
                     for ds, v in by_dataset.items())
  grid_lams = sorted({c["lam"] for c in found if c["lam"] is not None})
  lines = [
      f"Command: `{report.command_line()}`", "",
      "The calibration point's dense net, 784 → 512 → 10 (`fc` with `mlp_hidden=(512,)`, "
      "407,050 params), trained with SGD (momentum 0.9) or β-LASSO (the same momentum, "
      "β = 50, λ on the kernels of both layers; research/optimizers.py), batch 128, constant "
      f"rate; {page.rates_text(found, bool(spec.get('lr_search_rows')))} Budget and seeds "
      f"per dataset as they ran: {budget}. λ grid: {', '.join(f'{l:g}' for l in grid_lams)} "
      "(not every λ on every dataset: configs/sweeps/locality.py); λ chosen on the validation "
      "split (5,000 images; MNIST-1D 500 sequences), by mean validation accuracy: "
      + ", ".join(f"{DATASETS.get(k, k)} λ = {v:g}" for k, v in lambdas.items()) + ". "
      "One fixed pixel permutation (permutation_seed 0) for the shuffled cells." + page.others(found),
      "",
      "Locality: for each live hidden unit, the share of its first-layer weight mass (|w|) in "
      f"the best {locality.WINDOW}x{locality.WINDOW} window (1x{locality.WINDOW} on MNIST-1D's "
      "sequence) containing its centroid; rf size: the smallest window holding 90% of it. Chance: "
      "the same after each unit's weights are permuted among the inputs that vary in the "
      "training data (MNIST's never-varying border keeps its weights in place), so the chance "
      "level has the unit's sparsity. 'Centred 7x7': the window centred on the rounded "
      "centroid (cut by the edge), the calibration point's definition, which the best window "
      "bounds from above. Dead units (all weights zero) are left out. Shuffled cells are "
      "measured after un-permuting the first layer onto the original grid. The maximum, a "
      f"3x3 conv's exact dense form measured the same way: {reference:.3f}. Intervals: 95% Student t over seeds (locality − chance: of "
      "the per-seed differences).", "",
      *page.table(found, budgets), "",
      page.compute(trained, spec.get("lr_search_rows", []), result.runner.runs_dir), "",
      "Next to the calibration point (measured outside the project; epochs differ where the "
      "grid's equal budget is shorter):", "",
      *page.calibration_table(found), "",
      "Where this scale differs from the paper's: MNIST, Fashion-MNIST (28x28, grey) and "
      "MNIST-1D instead of CIFAR-10, CIFAR-100 and SVHN (32x32, colour); the S-FC at α = 4 and "
      "the D-FC at α = 1, with widths computed for 28x28; no batch normalization (the paper's "
      "nets put one, then ReLU, after every layer but the last) and no data augmentation; 10 "
      "epochs (MNIST-1D 100) at a constant rate, far shorter than the paper's training.", "",
      page.not_run(found), "",
      *(["Learning rates on the validation split (seed 0; final validation accuracy %, the chosen "
         "rate in bold):", "", *report.lr_search_table(spec["lr_search_rows"]), ""]
        if spec.get("lr_search_rows") else []),
      "![first-layer weights](locality_weights.png)" if pictures else "", "",
      "![locality over training](locality_curves.png)"]
  report.publish(output_dir, results_md, "locality", lines, rows)
  return found


def _cell(summary: dict, dataset: str, optimizer: str, shuffled: bool, lam=None):
  """The 784-512-10 net's cell at the dataset's usual epochs (not the calibration's 30)."""
  for c in summary["cells"]:
    if (c.get("model", "fc"), c["dataset"], c["optimizer"], c["shuffled"]) == (
        "fc", dataset, optimizer, shuffled) and (lam is None or c["lam"] == lam) and (
        c.get("epochs", usual_epochs(dataset)) == usual_epochs(dataset)):
      return c
  return None


def tested(summary: dict) -> list[tuple[str, dict]]:
  """The cells the verdict tests (locality − chance > 0, research/studies/_rules.py): the
  784-512-10 net with β-LASSO on MNIST and its twin on shuffled pixels un-permuted (same λ and
  epochs), the longest such pair whose cells both plateaued (else the longest pair)."""
  pairs = {}
  for c in summary["cells"]:
    if (c.get("model", "fc"), c["dataset"], c["optimizer"]) == ("fc", "mnist", "beta_lasso"):
      pairs.setdefault((c["lam"], c.get("epochs", usual_epochs("mnist"))), {})[c["shuffled"]] = c
  complete = {k: v for k, v in pairs.items() if len(v) == 2}
  flat = {k: v for k, v in complete.items()
          if not any(c.get("under_trained") for c in v.values())}
  if not complete:
    lam = summary["chosen_lambda"].get("mnist")
    return [(f"MNIST, β-LASSO λ={lam:g}", _cell(summary, "mnist", "beta_lasso", False, lam)),
            ("the same on shuffled pixels, first layer un-permuted", None)]
  (lam, epochs), pair = max((flat or complete).items(), key=lambda kv: (kv[0][1], -kv[0][0]))
  return [(f"MNIST, β-LASSO λ={lam:g}, {epochs} epochs", pair[False]),
          ("the same on shuffled pixels, first layer un-permuted", pair[True])]


def verdict_tests(results) -> list:
  """The locality claim's tests (order 3.5) for the verdict's family (research/studies/
  _rules.py), where this study ran: for each tested cell, H0 its first layer is no more local
  than its chance level (one-sided t test of the per-seed locality − chance)."""
  from research import stats
  from research.studies._rules import Test
  s = results.optional_summary("locality")
  out = []
  for what, c in (tested(s) if s else []):
    if c is None or "excess_seeds" not in c:
      continue
    m = stats.mean_test(c["excess_seeds"], 0.0)
    out.append(Test(3.5, f"H0: {what}, is no more local than chance", "threshold",
                    {**m, "unit": "share", "p": m["p_above"]},
                    [("locality", c["sweep_model"], c["condition"])]))
  return out


def claims(results) -> list[Claim]:
  """The seeds' 'Spatial awareness: None -- every pixel equally distant' (Dense ignores spatial
  structure), judged by whether a dense layer's learned weights are local on the grid."""
  s = results.optional_summary("locality")
  if s is None:
    return []
  chosen = s["chosen_lambda"].get("mnist")
  (name, bl), (name_shuf, bl_shuf) = tested(s)
  bl_chosen = _cell(s, "mnist", "beta_lasso", False, chosen)
  sgd = _cell(s, "mnist", "sgd", False)
  sgd_shuf = _cell(s, "mnist", "sgd", True)

  def above(c):
    return c is not None and c["excess"] - (c["excess_ci95"] or 0) > 0 and c["n"] > 1

  def line(name, c):
    if c is None:
      return f"{name}: not run."
    rate = f" (rate {c['learning_rate']:g})" if "learning_rate" in c else ""
    return (f"{name}{rate}: "
            f"{pct(c['test_accuracy'], c['test_accuracy_ci95'])}, "
            f"{100 * c['weights_left']:.1f}% of first-layer weights left, locality "
            f"{fmt(c, 'locality')} vs chance {fmt(c, 'chance')} (n={c['n']})")

  verdict = ("does not hold" if above(bl) and above(bl_shuf) else
             "holds in part" if above(bl) else "holds")
  return [Claim(
      3.5, SEED_2, "It has no concept that pixel 3 is adjacent to pixel 4 -- it only knows "
      "statistical correlations between positions. [...] Spatial awareness: None -- every pixel "
      "equally distant",
      verdict,
      [line(name, bl), line(name_shuf, bl_shuf),
       line(f"the λ chosen on validation, {chosen:g}", bl_chosen),
       line("SGD", sgd), line("SGD on shuffled pixels, un-permuted", sgd_shuf),
       f"A 3x3 conv's dense form scores {s['conv_reference']:.3f} (the maximum)."],
      "does not hold if the β-LASSO dense net's first layer is more local than its chance "
      "level (the interval of the per-seed locality − chance above zero) both on MNIST and on "
      "shuffled MNIST un-permuted: the dense layer recovers the grid from the correlations "
      "alone; holds in part if only on MNIST; else holds. The architecture has no built-in "
      "notion of adjacency either way: what is judged is whether a dense layer ignores it.")]
