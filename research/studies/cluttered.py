"""Cluttered MNIST 60x60 at growing budgets: is the CNN's lead over Dense a short budget's, or a
small MLP's?

Test accuracy of the seed MLP, an MLP matched to the seed CNN's parameters, the seed CNN, a CNN
and an LCN of half its widths and an MLP matched to that CNN's multiply-adds, at 3, 9 and 27 epochs each
(configs/sweeps/cluttered.py), every cell's curve checked for a plateau. Writes results.csv,
results.md, summary.json, cluttered.png and cluttered_curves.png into --output_dir.

  python -m research.studies cluttered --output_dir docs/studies/cluttered \
      --runs_dir runs/cluttered
"""
import os
import re

from research import studies
from research.studies import _axis
from research.sweeps import report

GAPS = (("cnn", "mlp"), ("cnn", "mlp_params"), ("cnn_narrow", "mlp_flops_narrow"),
        ("lcn_narrow", "mlp"), ("lcn_narrow", "mlp_flops_narrow"), ("cnn_narrow", "lcn_narrow"),
        ("cnn", "cnn_narrow"))
WHAT = {"mlp": "the seed MLP (one hidden layer of {w})",
        "mlp_params": "MLP, one hidden layer of {w}: the seed CNN's parameters on this canvas",
        "mlp_flops_narrow": "MLP, one hidden layer of {w}: cnn_narrow's multiply-adds on this "
                            "canvas",
        "cnn": "the seed CNN (Conv 32 -> Conv 64, 3x3, each with a 2x2 max pool; Dense)",
        "cnn_narrow": "the seed CNN at half its widths (Conv 16 -> Conv 32)",
        "lcn_narrow": "cnn_narrow without weight sharing (locally connected layers)"}


def split_condition(condition: str) -> tuple[str, int]:
  """'cluttered 60x60, 9 epochs' -> ('cluttered 60x60', 9)."""
  group, epochs = re.fullmatch(r"(.*), (\d+) epochs", condition).groups()
  return group, int(epochs)


def curves(frame):
  """One row per (model, budget): test accuracy's mean, std, 95% half-width and n; `x` the
  epochs."""
  agg = _axis.along(frame, split_condition)
  agg["x"] = agg["point"]
  return agg


def gaps(frame) -> list[dict]:
  """Welch intervals of model a − model b at each budget, for the pairs of GAPS."""
  return _axis.gaps(frame, GAPS, split_condition)


def run(sweep: str | None = None, results_md: str = "", **arguments):
  """The study; `arguments` are engine.run_sweep's (output_dir, runs_dir, executor, seeds, ...).
  Returns (frame of every row, the cells along the budget)."""
  result = studies.run_grid("cluttered", sweep, **arguments)
  rows, output_dir = result.rows, result.output_dir
  frame, budgets = report.to_frame(rows), studies.cell_budgets(rows)
  agg, compared = curves(frame), gaps(frame)
  params = frame.groupby("model", sort=False)["num_params"].first()
  _axis.plot(agg, os.path.join(output_dir, "cluttered.png"), "epochs", log=True)
  lines = [f"Command: `{report.command_line()}`", "",
           f"MNIST digits placed at random on a 60x60 canvas with 4 clutter crops of 8x8 px, "
           f"train and test, drawn again for every seed; seeds {sorted(set(frame['seed']))}. "
           "Every model of a budget trains the same epochs (batch 128, Adam, cosine decay), its "
           "rate chosen on a 5,000-image validation split (below). Test accuracy (%, mean ± 95% "
           f"t interval over seeds). Trained on {studies.cpus(rows)}.", "",
           "| model | what | parameters |", "|---|---|---|"]
  for m in params.index:
    width = result.spec["models"].get(m, {}).get("mlp_hidden", ("",))[0]
    lines.append(f"| {m} | {WHAT.get(m, m).format(w=width)} | {int(params[m]):,} |")
  lines += ["", *_axis.table(agg, budgets, lambda rows: f"{int(rows['x'].iloc[0])} epochs"),
            "† still rising over the last 20% of its training by more than its interval "
            "(under-trained). Budgets per cell:", "", *studies.budget_table(budgets), "",
            "Differences:", "",
            *_axis.gap_lines(compared, ("dataset", "epochs"), str)]
  lines += studies.rates_and_curves("cluttered", result.spec, rows, output_dir,
                                    "test accuracy per evaluation (mean, 95% CI)")
  studies.write_summary(output_dir, {
      "cells": [{"model": r["model"], "condition": r["condition"], "epochs": int(r["x"]),
                 "mean": r["test_accuracy_mean"], "ci95": r["test_accuracy_ci95"],
                 "n": int(r["n"]),
                 "under_trained": bool(((budgets.get((r["model"], r["condition"])) or {}).get(
                     "marker") or {}).get("under_trained", False))}
                for _, r in agg.iterrows()],
      "gaps": compared,
      "params": {m: int(p) for m, p in params.items()}, "command": report.command_line()})
  report.publish(output_dir, results_md, "cluttered", lines, rows)
  return frame, agg
