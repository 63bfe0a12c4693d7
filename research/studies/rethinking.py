"""Rethinking generalization (Zhang et al. 2017): can the models fit noise?

Per model: training loss and accuracy over steps for true labels, random labels, shuffled
pixels, random pixels and Gaussian images (Fig. 1a style), and a table of final train accuracy,
train loss and test accuracy (mean ± 95% interval over seeds) (configs/sweeps/rethinking.py).
Writes results.csv, results.md, summary.json, rethinking.png and curves.csv into --output_dir.

  python -m research.studies rethinking --output_dir docs/studies/rethinking
"""
import os

import numpy as np

from research import studies
from research.studies.verdict import pct
from research.sweeps import report


def curves(rows):
  """Long table of the logged training metrics of every run: model, condition, seed, step, ..."""
  import pandas as pd
  out = []
  for r in rows:
    for line in report.read_metrics(r["workdir"], "train"):
      out.append({"model": r["model"], "condition": r["condition"], "seed": r["seed"],
                  "step": line["step"], "loss": line["loss"], "accuracy": line["accuracy"]})
  return pd.DataFrame(out)


def checks(agg):
  acc = {(r["model"], r["condition"]): r for _, r in agg.iterrows()}
  out = []
  for model in ("mlp", "cnn"):
    if (model, "random labels") in acc:
      r = acc[model, "random labels"]
      out.append((f"{model.upper()} fits random labels: train accuracy >= 95%",
                  r["train_accuracy_mean"] >= 0.95,
                  report.fmt_interval(r["train_accuracy_mean"], r["train_accuracy_ci95"]) + "%"))
      out.append((f"{model.upper()} on random labels: test accuracy near chance (10% ± 3 pp)",
                  abs(r["test_accuracy_mean"] - 0.10) <= 0.03,
                  report.fmt_interval(r["test_accuracy_mean"], r["test_accuracy_ci95"]) + "%"))
  return out


def plot(curve_frame, path):
  plt = report.setup_matplotlib()
  models = list(dict.fromkeys(curve_frame["model"]))
  fig, axes = plt.subplots(2, len(models), figsize=(5.5 * len(models), 7), squeeze=False)
  for j, model in enumerate(models):
    sub = curve_frame[curve_frame["model"] == model]
    for cond, g in sub.groupby("condition", sort=False):
      by_step = list(g.groupby("step"))
      steps = np.array([s for s, _ in by_step]) / 1000
      for i, metric in enumerate(("loss", "accuracy")):
        stats = np.array([report.t_interval(v[metric]) for _, v in by_step])
        mean, half = stats[:, 0], np.nan_to_num(stats[:, 1])
        scale = 100 if metric == "accuracy" else 1
        axes[i, j].plot(steps, scale * mean, label=cond)
        axes[i, j].fill_between(steps, scale * (mean - half), scale * (mean + half), alpha=0.2)
    axes[0, j].set_title(f"{model.upper()}: training loss")
    axes[1, j].set_title(f"{model.upper()}: training accuracy (batches, %)")
    axes[1, j].set_xlabel("thousands of steps")
    axes[0, j].legend(fontsize=8)
  report.save_figure(fig, path)


def run(sweep: str | None = None, results_md: str = "", **arguments):
  """The study; `arguments` are engine.run_sweep's (output_dir, runs_dir, executor, seeds, ...).
  Returns (frame of every run, aggregate per model and condition)."""
  result = studies.run_grid("rethinking", sweep, **arguments)
  spec, rows, output_dir = result.spec, result.rows, result.output_dir
  frame = report.to_frame(rows)
  agg = report.aggregate(frame, metrics=("train_accuracy", "train_loss", "test_accuracy"))
  curve_frame = curves(rows)
  os.makedirs(output_dir, exist_ok=True)
  curve_frame.to_csv(os.path.join(output_dir, "curves.csv"), index=False)
  plot(curve_frame, os.path.join(output_dir, "rethinking.png"))
  common = spec["common"]
  lines = [f"Command: `{report.command_line()}`", "",
           f"Dataset {frame['dataset'].iloc[0]}; both models on the same {common['train_subset']:,}-"
           f"image training subset, {common['num_train_steps']:,} steps of batch "
           f"{common['batch_size']}, Adam {common['learning_rate']:g} (constant); seeds per model "
           f"{frame.groupby('model', sort=False)['seed'].nunique().to_dict()}. Train "
           "accuracy/loss: the final params on the whole (corrupted) training subset; test: the "
           "full clean test set (for random labels the test labels are the true ones). " +
           ("Every data draw (the subset, the random labels, the pixel permutations, the "
            "Gaussian images) varies with the seed, so the intervals cover it. "
            if spec.get("seeded_draws") else "Every data draw is seed 0's (the same subset, "
            "labels and permutations in every run): the intervals cover training noise only. ") +
           "Mean ± 95% t interval over seeds.", "",
           report.markdown_table(agg, metrics=("train_accuracy", "train_loss", "test_accuracy"),
                                labels={"train_loss": "train loss (nats)"}, spread="ci95",
                                more=studies.budget_columns(studies.cell_budgets(rows))), ""]
  lines += report.claims_table(checks(agg))
  lines += ["", "![rethinking generalization](rethinking.png)"]
  studies.write_summary(output_dir, {
      "cells": [{k: (v if isinstance(v, str) else float(v)) for k, v in r.items()}
                for _, r in agg.iterrows()], "command": report.command_line()})
  report.publish(output_dir, results_md, "rethinking", lines, rows)
  return frame, agg


def notes(results) -> list[tuple[float, list[str]]]:
  """Beside the claims: how well each model memorizes random labels."""
  rethink = {(c["model"], c["condition"]): c for c in results.summary("rethinking")["cells"]}
  keys = [("mlp", "random labels"), ("cnn", "random labels")]
  if not all(k in rethink for k in keys):
    return []
  lines = ["", "## Beside the claims: memorization (Zhang et al. 2017)", ""]
  for m, c in keys:
    r = rethink[m, c]
    lines.append(f"- {m.upper()} on random labels (5,000 images): train "
                 f"{pct(r['train_accuracy_mean'], r['train_accuracy_ci95'])}, test "
                 f"{pct(r['test_accuracy_mean'], r['test_accuracy_ci95'])}.")
  return [(20, lines)]
