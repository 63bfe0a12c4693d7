"""Dense vs Conv on a real table without spatial structure (sklearn's breast cancer data).

{MLP, 1-D conv} x {original column order, shuffled columns} x 10 seeds, equal steps, each
cell's learning rate chosen on a validation split (configs/sweeps/tabular.py). Writes
results.csv, results.md, summary.json, tabular.png and tabular_curves.png into --output_dir.

  python -m research.studies tabular --output_dir docs/studies/tabular
"""
import os

from research import studies
from research.studies.verdict import SEED_1, Claim, pp
from research.sweeps import report
CONDITIONS = ("original columns", "shuffled columns")


def effects(frame) -> list[dict]:
  """1-D CNN − MLP in each condition, and shuffled − original per model (Welch 95% intervals)."""
  def acc(model, condition):
    sel = frame[(frame["model"] == model) & (frame["condition"] == condition)]
    return sel["test_accuracy"].to_numpy(float)

  out = []
  pairs = [("cnn1d vs mlp", f"1-D CNN − MLP, {c}", ("cnn1d", c), ("mlp", c)) for c in CONDITIONS]
  pairs += [(m, "shuffled − original columns", (m, CONDITIONS[1]), (m, CONDITIONS[0]))
            for m in ("mlp", "cnn1d")]
  for model, what, a, b in pairs:
    if len(acc(*a)) and len(acc(*b)):
      d, low, high = report.diff_interval(acc(*a), acc(*b))
      out.append({"model": model, "what": what, "diff": d, "low": low, "high": high,
                  "verdict": report.verdict(low, high)})
  return out


def plot(agg, path):
  plt = report.setup_matplotlib()
  fig, ax = plt.subplots(figsize=(6, 3.5))
  labels = [f"{m}\n{c}" for m, c in zip(agg["model"], agg["condition"])]
  ci = 100 * agg["test_accuracy_ci95"].fillna(0)
  ax.bar(range(len(agg)), 100 * agg["test_accuracy_mean"], yerr=ci, capsize=3,
         color=["tab:blue" if m == "mlp" else "tab:orange" for m in agg["model"]])
  ax.set_xticks(range(len(agg)), labels, fontsize=8)
  low = max(0, (100 * agg["test_accuracy_mean"] - ci).min() - 5)
  ax.set_ylim(low, 100)
  ax.set_ylabel("test accuracy (%)")
  ax.set_title("Breast cancer (30 features): Dense vs 1-D conv (mean, 95% CI)")
  report.save_figure(fig, path)


def run(sweep: str | None = None, results_md: str = "", **arguments):
  """The study; `arguments` are engine.run_sweep's (output_dir, runs_dir, executor, seeds, ...).
  Returns (frame of every run, aggregate per model and condition)."""
  result = studies.run_grid("tabular", sweep, **arguments)
  spec, rows, output_dir = result.spec, result.rows, result.output_dir
  frame = report.to_frame(rows)
  agg = report.aggregate(frame)
  plot(agg, os.path.join(output_dir, "tabular.png"))
  report.plot_learning_curves(report.learning_curves(rows, "test"),
                              os.path.join(output_dir, "tabular_curves.png"),
                              "test accuracy against step (mean, 95% CI over seeds)")
  found = effects(frame)
  studies.write_summary(output_dir, {
      "cells": [{"model": r["model"], "condition": r["condition"], "mean": r["test_accuracy_mean"],
                 "ci95": r["test_accuracy_ci95"], "n": int(r["n"])} for _, r in agg.iterrows()],
      "effects": found, "command": report.command_line()})
  from research import data
  ds = data.load_breast_cancer()
  steps = sorted(set(int(s) for s in frame["steps"]))
  lines = [f"Command: `{report.command_line()}`", "",
           f"sklearn breast cancer: {len(ds.train_labels)} train / {len(ds.test_labels)} test "
           f"examples (fixed stratified split), 30 standardized features; 91 of the training "
           f"examples held out as the validation split that chooses each cell's learning rate "
           f"(below). Every model {', '.join(map(str, steps))} steps of batch 32, Adam with "
           f"cosine decay; seeds {sorted(set(frame['seed']))}. The test split is small: one "
           f"example is {100 / len(ds.test_labels):.2f} pp.", "",
           report.markdown_table(agg, spread="ci95",
                                 more=studies.budget_columns(studies.cell_budgets(rows))), "",
           *report.differences_table(found), "",
           "Learning rates (final validation accuracy %, seed 0; bold: chosen; ties go to the "
           "smaller rate):", "", *report.lr_search_table(spec.get("lr_search_rows", [])), "",
           "![tabular](tabular.png)", "", "![learning curves](tabular_curves.png)"]
  report.publish(output_dir, results_md, "tabular", lines, rows)
  return frame, agg


def claims(results) -> list[Claim]:
  """The evidence of claim 8 (on data without spatial structure a conv layer adds nothing); its
  verdict: research/studies/_rules.py."""
  tabular = results.csv("tabular")
  orig = tabular[tabular["condition"] == "original columns"]
  acc = {m: orig[orig["model"] == m]["test_accuracy"] for m in ("cnn1d", "mlp")}
  d = dict(zip(("diff", "low", "high"), report.diff_interval(acc["cnn1d"], acc["mlp"])))
  return [Claim(
      8, SEED_1, "Here, sensor data lacks inherent spatial structure. Using Conv2D layers "
      "would be inappropriate and inefficient. [...] Conv2D layers would only add "
      "unnecessary complexity without improving performance.",
      evidence=[f"A real table without spatial structure (breast cancer, 30 features): 1-D CNN − "
       f"MLP {pp(d)} (n={len(orig) // 2} seeds each)."])]
