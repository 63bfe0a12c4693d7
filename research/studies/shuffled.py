"""Shuffled pixels: does Dense ignore spatial structure, and does a CNN collapse?

{MLP, CNN, LCN} x {original, shuffled-and-retrained, trained-normal-tested-shuffled} x seeds
(configs/sweeps/shuffled.py). One fixed pixel permutation (its own seed) for every run, and the
MLP and the CNN once more with a permutation drawn per seed. Writes
results.csv, results.md, summary.json, shuffled.png and shuffled_curves.png into --output_dir.

  python -m research.studies shuffled --output_dir docs/studies/shuffled --runs_dir runs/harder
"""
import json
import os

from research import studies
from research.studies.verdict import SEED_2, Claim, cell, pct, pp
from research.sweeps import report

CONDITIONS = ("MNIST", "MNIST shuffled", "normal -> shuffled test", "MNIST shuffled per seed")


def effects(frame) -> list[dict]:
  """Per model: shuffled-and-retrained minus MNIST, and trained-normal-tested-shuffled minus
  MNIST, each with its Welch 95% interval; then the CNN's shuffle drop minus the MLP's."""
  def acc(model, condition):
    sel = frame[(frame["model"] == model) & (frame["condition"] == condition)]
    return sel["test_accuracy"].to_numpy(float)

  out = []
  for model in dict.fromkeys(frame["model"]):
    for cond in CONDITIONS[1:]:
      if len(acc(model, cond)) and len(acc(model, "MNIST")):
        d, low, high = report.diff_interval(acc(model, cond), acc(model, "MNIST"))
        out.append({"model": model, "what": f"{cond} − MNIST", "diff": d, "low": low,
                    "high": high, "verdict": report.verdict(low, high)})
  if all(len(acc(m, c)) for m in ("mlp", "cnn") for c in CONDITIONS[:2]):
    # Drop of the CNN minus drop of the MLP, seeds of each model paired by seed (same runs).
    drops = {m: acc(m, "MNIST shuffled") - acc(m, "MNIST") for m in ("mlp", "cnn")}
    d, low, high = report.diff_interval(drops["cnn"], drops["mlp"])
    out.append({"model": "cnn vs mlp", "what": "CNN's shuffle effect − MLP's", "diff": d,
                "low": low, "high": high, "verdict": report.verdict(low, high)})
  return out


def plot(agg, path):
  plt = report.setup_matplotlib()
  models = list(dict.fromkeys(agg["model"]))
  fig, ax = plt.subplots(figsize=(7, 4))
  width = 0.8 / len(CONDITIONS)
  for j, cond in enumerate(CONDITIONS):
    sub = agg[agg["condition"] == cond].set_index("model").reindex(models)
    ax.bar([i + (j - 1) * width for i in range(len(models))], 100 * sub["test_accuracy_mean"],
           width, yerr=100 * sub["test_accuracy_ci95"].fillna(0), capsize=3, label=cond)
  ax.set_xticks(range(len(models)), [m.upper() for m in models])
  ax.set_ylabel("test accuracy (%)")
  ax.axhline(10, color="gray", lw=0.8, ls=":")
  ax.set_ylim(0, 100)
  ax.set_title(f"Shuffled pixels on {agg.attrs.get('dataset', 'MNIST')} (mean, 95% CI over seeds)")
  ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize=8)
  report.save_figure(fig, path)


def run(sweep: str | None = None, results_md: str = "", **arguments):
  """The study; `arguments` are engine.run_sweep's (output_dir, runs_dir, executor, seeds, ...).
  Returns (frame of every row, aggregate per model and condition)."""
  result = studies.run_grid("shuffled", sweep, **arguments)
  spec, rows, output_dir = result.spec, result.rows, result.output_dir
  frame = report.to_frame(rows)
  agg = report.aggregate(frame)
  agg.attrs["dataset"] = str(frame["dataset"].iloc[0])
  plot(agg, os.path.join(output_dir, "shuffled.png"))
  trained = [r for r in rows if r.get("status") != "eval"]
  report.plot_learning_curves(report.learning_curves(trained, "test"),
                              os.path.join(output_dir, "shuffled_curves.png"),
                              "test accuracy per epoch (mean, 95% CI over seeds)")
  found = effects(frame)
  epochs = sorted(set(json.load(open(os.path.join(r["workdir"], "config.json")))["num_epochs"]
                      for r in trained))
  studies.write_summary(output_dir, {
      "cells": [{"model": r["model"], "condition": r["condition"], "mean": r["test_accuracy_mean"],
                 "ci95": r["test_accuracy_ci95"], "n": int(r["n"])} for _, r in agg.iterrows()],
      "effects": found, "epochs": epochs, "command": report.command_line()})
  is_lcn = frame["model"] == "lcn"
  seeds, lcn_seeds = sorted(set(frame[~is_lcn]["seed"])), sorted(set(frame[is_lcn]["seed"]))
  lcn = ("" if lcn_seeds == seeds else f" (LCN {lcn_seeds})" if lcn_seeds else
         " (no LCN: its shuffled-pixels cell at equal budget is in the harder-task study, on "
         "Fashion-MNIST)")
  lines = [f"Command: `{report.command_line()}`", "",
           f"Dataset {agg.attrs['dataset']}, seeds {seeds}{lcn}, "
           f"{', '.join(map(str, epochs))} epochs for every "
           "model, learning rates chosen on a 5,000-image validation split (below); one fixed "
           "pixel permutation (permutation_seed 0), and in 'MNIST shuffled per seed' each seed's "
           "own (permutation_seed = seed). 'normal -> shuffled test' scores the params of the "
           "'MNIST' runs on permuted test images (no retraining).", "",
           report.markdown_table(agg, metrics=("test_accuracy",), spread="ci95",
                                 more=studies.budget_columns(studies.cell_budgets(rows))), "",
           *report.differences_table(found), "",
           "Learning rates (final validation accuracy %, seed 0; bold: chosen):", "",
           *report.lr_search_table(spec.get("lr_search_rows", [])), "",
           "![shuffled pixels](shuffled.png)", "", "![learning curves](shuffled_curves.png)"]
  report.publish(output_dir, results_md, "shuffled", lines, rows)
  return frame, agg


def claims(results) -> list[Claim]:
  """The evidence of claims 3 (Dense ignores a pixel shuffle) and 4 (a CNN collapses on one),
  with the harder study's shuffles of Fashion-MNIST and MNIST-1D beside MNIST's (their verdicts:
  research/studies/_rules.py)."""
  shuffled, harder = results.summary("shuffled"), results.summary("harder")
  effects = {(e["model"], e["what"]): e for e in shuffled["effects"]}
  mlp_shuf = effects["mlp", "MNIST shuffled − MNIST"]

  def per_seed(model):
    e = effects.get((model, "MNIST shuffled per seed − MNIST"))
    if not e:
      return []
    c = cell(shuffled, model, "MNIST shuffled per seed")
    return [f"MNIST, a permutation drawn per seed: {model.upper()} retrained "
            f"{pct(c['mean'], c['ci95'])}, shuffled − original {pp(e)}."]

  others = [s for s in harder["shuffles"] if s["model"] in ("mlp",)]
  out = [Claim(
      3, SEED_2, "Dense model gets ~97.8% on normal AND shuffled images. [...] randomly "
      "shuffle every pixel in every image, then retrain. Dense accuracy barely changes "
      "because it never used spatial relationships in the first place.",
      evidence=[f"MNIST: MLP shuffled − original {pp(mlp_shuf)}."] + per_seed("mlp") +
      [f"{s['original']}: MLP shuffled − original {pp(s)}." for s in others])]
  cnn_retrained = cell(shuffled, "cnn", "MNIST shuffled")
  cnn_tested = cell(shuffled, "cnn", "normal -> shuffled test")
  mlp_tested = cell(shuffled, "mlp", "normal -> shuffled test")
  cnn_eff = effects["cnn", "MNIST shuffled − MNIST"]
  out.append(Claim(
      4, SEED_2, "CNN would collapse from ~99.2% to ~random on shuffled images",
      evidence=[f"CNN retrained on shuffled MNIST: {pct(cnn_retrained['mean'], cnn_retrained['ci95'])}"
       f" (change {pp(cnn_eff)}).",
       f"CNN trained on MNIST, tested on shuffled images (no retraining): "
       f"{pct(cnn_tested['mean'], cnn_tested['ci95'])}; the MLP the same way: "
       f"{pct(mlp_tested['mean'], mlp_tested['ci95'])}."] + per_seed("cnn") +
      [f"{s['original']}: {s['model']} shuffled − original {pp(s)}."
       for s in harder["shuffles"] if s["model"] in ("cnn", "cnn1d")]))
  return out
