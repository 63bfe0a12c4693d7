"""The locality study's page text: its tables (every cell; the calibration point beside this
project's numbers) and the sentences on the other nets, the rates, the compute and what was not
run (research/studies/locality.py)."""
import json
import os

from configs.sweeps.locality import EPOCHS, LONG
from research import studies
from research.studies.locality import fmt
from research.sweeps import report


def table(found: list[dict], budgets: dict) -> list[str]:
  lines = ["| condition | rate | n | test accuracy % | weights left (first layer) | "
           "locality (7x7) | chance | locality − chance | centred 7x7 | its chance | "
           "rf size (90%) | chance rf | budget | under-trained? |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for c in found:
    budget, mark = studies.budget_cells(budgets, c["sweep_model"], c["condition"])
    acc = report.fmt_interval(c["test_accuracy"], c["test_accuracy_ci95"])
    lines.append(f"| {c['label']}{' (un-permuted)' if c['shuffled'] else ''} | "
                 f"{c['learning_rate']:g} | {c['n']} | {acc} "
                 f"| {fmt(c, 'weights_left', 4)} | {fmt(c, 'locality')} | {fmt(c, 'chance')} | "
                 f"{fmt(c, 'excess')} | {fmt(c, 'centred')} | {fmt(c, 'chance_centred')} | "
                 f"{fmt(c, 'rf', 1)} | {fmt(c, 'chance_rf', 1)} | {budget} | {mark} |")
  return lines


def calibration_table(found: list[dict]) -> list[str]:
  lines = ["| cell | calibration (outside the project) | here |", "|---|---|---|"]
  for c in found:
    cal = c["calibration"]
    if not cal:
      continue
    epochs, acc, zero, loc, chance = cal
    there = (f"{epochs} epochs" + (f", {100 * acc:.1f}%" if acc else "") +
             (f", {100 * zero:.1f}% zero" if zero else "") + f", locality {loc} vs chance {chance}")
    here = (f"{c['epochs']} epochs, rate {c['learning_rate']:g}, "
            f"{report.fmt_interval(c['test_accuracy'], c['test_accuracy_ci95'])}%, "
            f"{100 * (1 - c['weights_left']):.1f}% zero, locality {fmt(c, 'locality')} vs "
            f"chance {fmt(c, 'chance')}; centred window {fmt(c, 'centred')} vs "
            f"{fmt(c, 'chance_centred')}")
    lines.append(f"| {c['label']} | {there} | {here} |")
  return lines


def others(found: list[dict]) -> str:
  """The sentence on the cells other than the 784-512-10 net's, where the grid has them."""
  nets = {c["net"]: c["num_params"] for c in found if c["model"] not in ("fc",)}
  if not nets:
    return ""
  adam = any(c["optimizer"] == "adam" for c in found)
  return (" Beside it, at each dataset's budget: " + ", ".join(
      f"{net} ({int(n):,} params)" for net, n in nets.items()) +
      " (S-FC and D-FC: the paper's fully connected counterparts of its shallow and deep conv "
      "nets at width factor α, on 28x28 instead of 32x32; the CNN, the LCN and the 1-D CNN are "
      "not measured for locality)" + (", and Adam in place of SGD" if adam else "") + ".")


def compute(trained: list[dict], searched: list[dict], runs_dir: str) -> str:
  """The study's compute: its runs' training time summed, the rate search's other candidates
  beside it, and the CPUs that trained them."""
  own = {os.path.basename(os.path.normpath(r["workdir"])) for r in trained}
  extra = [r["workdir"] for r in searched if r["workdir"] not in own]
  seconds = sum(float(r.get("train_seconds") or 0) for r in trained)
  for name in extra:
    path = os.path.join(runs_dir, name, "results.json")
    if os.path.isfile(path):
      with open(path) as f:
        seconds += float(json.load(f).get("train_seconds") or 0)
  return (f"Compute: {len(trained)} runs" + (f" and {len(extra)} other rate-search candidates"
                                             if extra else "") +
          f", {seconds / 3600:.1f} h of training summed (evaluation and the locality measures "
          f"each epoch not counted), on {studies.cpus(trained)}.")


def rates_text(found: list[dict], searched: bool) -> str:
  """How the cells' rates were set: chosen on validation (the search's table below) or fixed."""
  rates = sorted({c["learning_rate"] for c in found})
  if not searched:
    return f"rate {', '.join(f'{r:g}' for r in rates)}, not searched."
  return ("each cell's rate chosen on the validation split with seed 0 among 0.02, 0.05 and 0.1 "
          "around the calibration point's 0.05 (Adam: 3e-4, 1e-3, 3e-3), one step further where "
          "the best was at an end (table below); the calibration point's 30-epoch cells keep its "
          "0.05, and a shuffled cell takes the rate chosen for its twin on original pixels "
          "(training on shuffled pixels is training on the original ones from a permuted "
          "initialisation: the same problem). Rates the cells ran at: " +
          ", ".join(f"{r:g}" for r in rates) + ".")


def not_run(found: list[dict]) -> str:
  """What the study's grid leaves out, from the cells it has."""
  models = {c["model"] for c in found}
  named = {"s_fc": "the paper's S-FC (model `s_fc`)", "d_fc": "D-FC (model `d_fc`)",
           "lcn": "the LCN", "cnn": "the seed CNN"}
  left = [text for model, text in named.items() if model not in models]
  left += [] if any(c["optimizer"] == "adam" for c in found) else ["Adam"]
  left += [] if any(c["epochs"] == LONG for c in found) else [
      "the calibration point's 30-epoch cells"]
  twins = {(c["lam"], c["shuffled"]): c["learning_rate"] for c in found
           if c["model"] == "fc" and c["dataset"] == "mnist" and c["lam"] == 4e-4
           and c["epochs"] == EPOCHS}
  same = len(set(twins.values())) == 1 and len(twins) == 2
  return (("Not run: " + ", ".join(left) + ". " if left else "") +
          ("In the curves, MNIST β-LASSO λ=0.0004 on original pixels lies under its "
           "shuffled-and-un-permuted twin (the same rate): the symmetry of tests/test_locality.py "
           "(same seed, same init up to the permutation)." if same else ""))
