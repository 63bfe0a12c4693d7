"""Harder tasks at equal budgets: {MLP, CNN, LCN} on MNIST, Fashion-MNIST (original and shuffled
pixels) and cluttered MNIST 60x60; {logistic regression, MLP, 1-D CNN} on MNIST-1D (original and
shuffled). The seeds claim that on harder image tasks Dense degrades sharply while CNNs keep
their accuracy: this measures the CNN - MLP gap per dataset with a 95% interval.

Writes results.csv (one row per run), lr_search.csv, summary.json (what docs/verdict.md is made
from), results.md and the plots into --output_dir.

  python -m research.studies harder --output_dir docs/studies/harder --runs_dir runs/harder \
      --results_md docs/results.md
"""
import json
import os

import numpy as np
import pandas as pd

from research import studies
from research.studies import _rules
from research.studies.verdict import SEED_1, SEED_2, Claim, anchors, cell, gap, pct, pp
from research.sweeps import report

# Which conv model each dataset's comparison uses.
CONV = {"cnn1d": "cnn1d", "cnn": "cnn"}
SHUFFLE_PAIRS = (("Fashion-MNIST", "Fashion-MNIST shuffled"), ("MNIST-1D", "MNIST-1D shuffled"))


def _acc(frame, model, condition):
  sel = frame[(frame["model"] == model) & (frame["condition"] == condition)]
  return sel["test_accuracy"].to_numpy(np.float64)


def comparisons(frame):
  """Per dataset: conv - MLP, LCN - MLP, conv - LCN (Welch 95% intervals); per shuffle pair:
  shuffled - original per model."""
  gaps, shuffles = [], []
  for condition in dict.fromkeys(frame["condition"]):
    models = set(frame[frame["condition"] == condition]["model"])
    conv = "cnn1d" if "cnn1d" in models else "cnn"
    pairs = [(conv, "mlp"), ("lcn", "mlp"), (conv, "lcn"), ("mlp", "logreg"),
             (conv, "mlp_params"), (conv, "mlp_flops"), ("lcn", "mlp_flops")]
    for a, b in pairs:
      if a in models and b in models:
        d, low, high = report.diff_interval(_acc(frame, a, condition), _acc(frame, b, condition))
        gaps.append({"condition": condition, "a": a, "b": b, "diff": d, "low": low, "high": high,
                     "verdict": report.verdict(low, high), "n_a": len(_acc(frame, a, condition)),
                     "n_b": len(_acc(frame, b, condition))})
  for original, shuffled in SHUFFLE_PAIRS:
    for model in dict.fromkeys(frame[frame["condition"] == original]["model"]):
      a, b = _acc(frame, model, shuffled), _acc(frame, model, original)
      if len(a) and len(b):
        d, low, high = report.diff_interval(a, b)
        shuffles.append({"original": original, "shuffled": shuffled, "model": model, "diff": d,
                         "low": low, "high": high, "verdict": report.verdict(low, high)})
  return gaps, shuffles


def cell_table(agg, frame, budgets: dict) -> list[str]:
  """One row per (dataset, model); `budgets`: studies.cell_budgets of the runs."""
  lines = ["| dataset | model | test accuracy (%, mean ± 95% CI) | ± std | validation (%) | "
           "learning rate | seeds | epochs | params | train s / run | " +
           " | ".join(studies.BUDGET_HEAD) + " |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for _, r in agg.iterrows():
    sel = frame[(frame["model"] == r["model"]) & (frame["condition"] == r["condition"])]
    lr = ", ".join(f"{v:g}" for v in sorted(set(sel["learning_rate"])))
    epochs = ", ".join(str(v) for v in sorted(set(sel["num_epochs"])))
    lines.append(
        f"| {r['condition']} | {r['model']} | "
        f"{report.fmt_interval(r['test_accuracy_mean'], r['test_accuracy_ci95'])} | "
        f"{100 * r['test_accuracy_std']:.2f} | {100 * r['validation_accuracy_mean']:.2f} | {lr} | "
        f"{int(r['n'])} | {epochs} | {int(r['num_params']):,} | "
        f"{sel['train_seconds'].mean():.0f} | " +
        " | ".join(studies.budget_cells(budgets, r["model"], r["condition"])) + " |")
  return lines


def gap_table(gaps) -> list[str]:
  lines = ["| dataset | difference | pp (95% CI, Welch) | verdict | seeds |", "|---|---|---|---|---|"]
  for g in gaps:
    lines.append(f"| {g['condition']} | {g['a']} − {g['b']} | "
                 f"{report.fmt_diff(g['diff'], g['low'], g['high'])} | {g['verdict']} | "
                 f"{g['n_a']} vs {g['n_b']} |")
  return lines


def shuffle_table(shuffles) -> list[str]:
  lines = ["| dataset | model | shuffled − original, pp (95% CI) | verdict |", "|---|---|---|---|"]
  for s in shuffles:
    lines.append(f"| {s['original']} | {s['model']} | "
                 f"{report.fmt_diff(s['diff'], s['low'], s['high'])} | {s['verdict']} |")
  return lines


def mnist1d_paper() -> dict:
  """MNIST-1D's paper's test accuracy of its reference models on MNIST-1D ({name: mean %}),
  from research/studies/anchors.json, to set beside this project's at its own budget."""
  return {k: v[0] for k, v in anchors()["mnist1d_paper"]["rows"]["MNIST-1D"].items()}


def mnist1d_table(agg) -> list[str]:
  ours = {"logreg": "logistic regression", "mlp": "MLP", "cnn1d": "CNN"}
  paper = mnist1d_paper()
  sub = agg[agg["condition"] == "MNIST-1D"].set_index("model")
  if sub.empty:
    return []
  lines = ["| model | MNIST-1D paper (%) | this project (%, 95% CI) |", "|---|---|---|"]
  for key, name in ours.items():
    here = (report.fmt_interval(sub.loc[key, "test_accuracy_mean"],
                                sub.loc[key, "test_accuracy_ci95"]) if key in sub.index else "—")
    lines.append(f"| {name} | ~{paper[name]} | {here} |")
  lines.append(f"| GRU | ~{paper['GRU']} | (no recurrent model here) |")
  return lines


def plot_cells(agg, gaps, path):
  plt = report.setup_matplotlib()
  conditions = list(dict.fromkeys(agg["condition"]))
  models = list(dict.fromkeys(agg["model"]))
  fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
  width = 0.8 / len(models)
  for j, model in enumerate(models):
    sub = agg[agg["model"] == model].set_index("condition").reindex(conditions)
    axes[0].bar(np.arange(len(conditions)) + (j - (len(models) - 1) / 2) * width,
                100 * sub["test_accuracy_mean"], width,
                yerr=100 * np.nan_to_num(sub["test_accuracy_ci95"]), capsize=2, label=model.upper())
  axes[0].set_xticks(range(len(conditions)), conditions, rotation=20, ha="right", fontsize=8)
  axes[0].set_ylabel("test accuracy (%)")
  axes[0].set_ylim(0, 100)
  axes[0].legend(fontsize=8, ncol=len(models))
  axes[0].set_title("accuracy per model (mean, 95% CI)", fontsize=10)
  conv_gaps = [g for g in gaps if g["b"] == "mlp" and g["a"] in CONV]
  y = np.arange(len(conv_gaps))
  d = np.array([100 * g["diff"] for g in conv_gaps])
  err = np.array([[100 * (g["diff"] - g["low"]), 100 * (g["high"] - g["diff"])]
                  for g in conv_gaps]).T
  axes[1].errorbar(d, y, xerr=np.nan_to_num(err), fmt="o", capsize=3)
  axes[1].axvline(0, color="gray", lw=0.8)
  axes[1].set_yticks(y, [f"{g['condition']} ({g['a']})" for g in conv_gaps], fontsize=8)
  axes[1].invert_yaxis()
  axes[1].set_xlabel("conv − MLP test accuracy (pp, 95% CI)")
  axes[1].set_title("what convolution buys, per dataset", fontsize=10)
  report.save_figure(fig, path)


def run(sweep: str | None = None, results_md: str = "", **arguments):
  """The study; `arguments` are engine.run_sweep's (output_dir, runs_dir, executor, seeds, ...).
  Returns (frame of every run, aggregate per dataset and model, the differences)."""
  result = studies.run_grid("harder", sweep, **arguments)
  spec, rows, output_dir = result.spec, result.rows, result.output_dir
  frame = report.to_frame(rows)
  frame["num_epochs"] = [json.load(open(os.path.join(w, "config.json")))["num_epochs"]
                         for w in frame["workdir"]]
  agg = report.aggregate(frame, metrics=("test_accuracy", "validation_accuracy"))
  gaps, shuffles = comparisons(frame)
  search = spec.get("lr_search_rows", [])
  pd.DataFrame(search).to_csv(os.path.join(output_dir, "lr_search.csv"), index=False)
  plot_cells(agg, gaps, os.path.join(output_dir, "harder.png"))
  curves = report.learning_curves(rows, "test")
  report.plot_learning_curves(curves, os.path.join(output_dir, "harder_curves.png"),
                              "test accuracy per epoch (mean, 95% CI over seeds)")
  hours = frame["train_seconds"].sum() / 3600
  summary = {"cells": [{"condition": r["condition"], "model": r["model"],
                        "mean": r["test_accuracy_mean"], "ci95": r["test_accuracy_ci95"],
                        "std": r["test_accuracy_std"], "n": int(r["n"])}
                       for _, r in agg.iterrows()],
             "gaps": gaps, "shuffles": shuffles, "mnist1d_paper": mnist1d_paper(),
             "train_hours": hours, "command": report.command_line()}
  studies.write_summary(output_dir, summary)
  lines = [f"Command: `{report.command_line()}`", "",
           "Equal budgets inside each dataset: every model the same epochs, batch 128, Adam with "
           "cosine decay; the learning rate chosen per model and dataset on a validation split "
           "held out of the training set (5,000 images; 500 MNIST-1D sequences), from the "
           "candidates below, at seed 0. Test accuracy is over the whole test split. Intervals: "
           "Student t (cells), Welch (differences); a difference is '> 0' or '< 0' only when its "
           f"95% interval excludes zero. Training time of all runs: {hours:.1f} h (train seconds "
           f"summed over runs) on {studies.cpus(rows)}, shared with other jobs.", "",
           *cell_table(agg, frame, studies.cell_budgets(rows)), "",
           "**What convolution buys** (differences of mean test accuracy):", "",
           *gap_table(gaps), ""]
  if shuffles:
    lines += ["**Shuffled pixels / positions** (one fixed permutation of the input positions, "
              "train and test, retrained):", "", *shuffle_table(shuffles), ""]
  if mnist1d_table(agg):
    lines += ["**MNIST-1D beside its paper** (the paper's models and budgets differ: its numbers "
              "are anchors, not a like-for-like comparison):", "", *mnist1d_table(agg), ""]
  lines += ["**Learning rates** (final validation accuracy %, seed 0; bold: chosen):", "",
            *report.lr_search_table(search), "",
            "![accuracy per dataset](harder.png)", "", "![learning curves](harder_curves.png)"]
  report.publish(output_dir, results_md, "harder", lines, rows)
  return frame, agg, gaps


def claims(results) -> list[Claim]:
  """The evidence of claims 1 (a CNN beats Dense on MNIST), 2 (Dense still gets ~97-98% there)
  and 7 (Dense degrades sharply on harder image tasks); their verdicts, and claim 7's CIFAR-10
  anchor (anchors.json): research/studies/_rules.py and verdict.judge."""
  harder = results.summary("harder")
  g = gap(harder, "cnn", "mlp", "MNIST")
  mlp, cnn = cell(harder, "mlp", "MNIST"), cell(harder, "cnn", "MNIST")
  out = [Claim(
      1, SEED_1, "Replacing the Conv2D layers with Dense layers would lead to a "
      "significantly worse performing model.",
      evidence=[f"MNIST, equal budgets: seed CNN {pct(cnn['mean'], cnn['ci95'])} (n={cnn['n']}), "
       f"seed MLP {pct(mlp['mean'], mlp['ci95'])} (n={mlp['n']}); CNN − MLP {pp(g)}."]),
    Claim(
      2, SEED_2, "Dense layers still get ~97-98% on MNIST because the dataset is simple.",
      evidence=[f"seed MLP on MNIST {pct(mlp['mean'], mlp['ci95'])} at the harder-task study's "
                "budget."])]
  lines = []
  for label, study, conv, condition in _rules.harder_sources(results):
    g = _rules.source_gap(results, study, conv, "mlp", condition)
    cells = results.cell_info(study)
    name = "1-D CNN" if conv == "cnn1d" or label == "MNIST-1D" else "CNN"
    where = "" if study == "harder" else f" (docs/studies/{study}, {condition})"
    lines.append(f"{label}{where}: {name} − MLP {pp(g)}; MLP "
                 f"{pct(cells['mlp', condition]['mean'], cells['mlp', condition]['ci95'])}, "
                 f"{name} {pct(cells[conv, condition]['mean'], cells[conv, condition]['ci95'])}.")
  out.append(Claim(
      7, SEED_2, "on harder image tasks (CIFAR-10, medical imaging, malware "
      "visualisation), Dense performance degrades sharply while CNNs maintain accuracy.",
      evidence=lines))
  return out


def notes(results) -> list[tuple[float, list[str]]]:
  """The study's command (last; the external anchors are verdict.notes', from anchors.json)."""
  harder = results.summary("harder")
  return [(90, ["", f"Harder-task study command: `{harder.get('command', '')}`; training time "
                f"of its runs {harder.get('train_hours', float('nan')):.1f} h."])]
