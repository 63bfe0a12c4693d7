"""Translation: is a Conv net's tolerance to shifted digits built in, and is Dense's absent?

Per model: test accuracy vs a fixed shift of the test images (0-10 px; mean over the
directions in the sweep file), trained without and with random-shift augmentation; and
translated MNIST (each digit at a random position of a 40x40 canvas, train and test)
(configs/sweeps/translation.py). Writes results.csv, results.md, summary.json,
translation.png and translation_curves.png into --output_dir.

  python -m research.studies translation --output_dir docs/studies/translation \
      --runs_dir runs/harder
"""
import os

import numpy as np

from research import studies
from research.studies.verdict import SEED_2, Claim, pct, pp
from research.sweeps import report


def shift_curves(frame):
  """mean/std over seeds of the direction-averaged accuracy, per (model, condition, shift)."""
  import pandas as pd
  trained = frame[frame["eval"].isna()] if "eval" in frame.columns else frame
  base = trained[~trained["condition"].str.startswith("canvas")].assign(shift=0)
  evals = frame[frame["eval"].notna()] if "eval" in frame.columns else frame.iloc[:0]
  per_seed = pd.concat([
      base[["model", "condition", "seed", "shift", "test_accuracy"]],
      evals.groupby(["model", "condition", "seed", "shift"], sort=False)["test_accuracy"]
      .mean().reset_index()])
  per_seed["shift"] = per_seed["shift"].astype(int)
  groups = per_seed.groupby(["model", "condition", "shift"], sort=False)["test_accuracy"]
  curves = groups.agg(["mean", "std", "count"]).reset_index().fillna({"std": 0.0})
  curves["ci95"] = groups.agg(lambda v: report.t_interval(v)[1]).to_numpy()
  return curves.sort_values("shift", kind="stable")  # groups keep their first-seen order


def curve_table(curves, budgets: dict) -> str:
  """One row per (model, training); `budgets`: studies.cell_budgets of the trained runs."""
  shifts = sorted(set(curves["shift"]))
  lines = ["| model | training | " + " | ".join(f"{s} px" for s in shifts) + " | n | " +
           " | ".join(studies.BUDGET_HEAD) + " |", "|" + "---|" * (len(shifts) + 5)]
  for (model, cond), g in curves.groupby(["model", "condition"], sort=False):
    g = g.set_index("shift")
    cells = [report.fmt_interval(g.loc[s, "mean"], g.loc[s, "ci95"], digits=1) if s in g.index
             else "" for s in shifts]
    lines.append(f"| {model} | {cond} | " + " | ".join(cells) + f" | {int(g['count'].max())} | "
                 + " | ".join(studies.budget_cells(budgets, model, cond)) + " |")
  return "\n".join(lines)


def checks(curves):
  acc = {(r["model"], r["condition"], r["shift"]): r["mean"] for _, r in curves.iterrows()}
  out = []
  if all((m, "MNIST", s) in acc for m in ("mlp", "cnn") for s in (0, 4)):
    drop = {m: 100 * (acc[m, "MNIST", 0] - acc[m, "MNIST", 4]) for m in ("mlp", "cnn")}
    out.append(("at a 4 px shift the MLP loses more accuracy than the CNN (no augmentation)",
                drop["mlp"] > drop["cnn"],
                f"MLP -{drop['mlp']:.1f} pp, CNN -{drop['cnn']:.1f} pp"))
  return out


def plot(curves, canvas, path):
  plt = report.setup_matplotlib()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
  colors = {"mlp": "tab:blue", "cnn": "tab:orange", "lcn": "tab:green"}
  for (model, cond), g in curves.groupby(["model", "condition"], sort=False):
    axes[0].errorbar(g["shift"], 100 * g["mean"], yerr=100 * g["ci95"].fillna(0), capsize=2,
                     marker="o", ms=3, color=colors.get(model), ls="-" if cond == "MNIST" else "--",
                     label=f"{model.upper()}, {'no augmentation' if cond == 'MNIST' else cond}")
  axes[0].set_xlabel("test shift (px, mean over directions)")
  axes[0].set_ylabel("test accuracy (%)")
  axes[0].set_ylim(0, 100)
  axes[0].axhline(10, color="gray", lw=0.8, ls=":")
  axes[0].legend(fontsize=8)
  axes[0].set_title("Accuracy vs shift")
  if len(canvas):
    x = np.arange(len(canvas))
    axes[1].bar(x, 100 * canvas["test_accuracy_mean"],
                yerr=100 * canvas["test_accuracy_ci95"].fillna(0),
                capsize=3, color=[colors.get(m) for m in canvas["model"]])
    axes[1].set_xticks(x, [m.upper() for m in canvas["model"]])
    axes[1].set_ylim(0, 100)
    axes[1].set_title("Translated MNIST, 40x40 canvas")
  report.save_figure(fig, path)


def run(sweep: str | None = None, results_md: str = "", **arguments):
  """The study; `arguments` are engine.run_sweep's (output_dir, runs_dir, executor, seeds, ...).
  Returns (frame of every row, accuracy per model, training and shift)."""
  result = studies.run_grid("translation", sweep, **arguments)
  spec, rows, output_dir = result.spec, result.rows, result.output_dir
  gaps = []
  frame = report.to_frame(rows)
  curves = shift_curves(frame)
  trained = frame[frame["eval"].isna()] if "eval" in frame.columns else frame
  canvas = report.aggregate(trained[trained["condition"].str.startswith("canvas")])
  budgets = studies.cell_budgets(rows)
  plot(curves, canvas, os.path.join(output_dir, "translation.png"))
  lines = [f"Command: `{report.command_line()}`", "",
           f"Dataset {frame['dataset'].iloc[0]}, seeds {sorted(set(frame['seed']))}. Test "
           "accuracy (%) with every test image shifted by k px (zero fill), mean over the "
           "directions of configs/sweeps/translation.py, then mean ± 95% t interval over seeds. "
           "'augment' runs trained on random shifts in [-4, 4] px. Every model the same epochs, "
           "learning rates chosen on the validation split (below).",
           "", curve_table(curves, budgets), ""]
  if len(canvas):
    lines += ["Translated MNIST: each digit at a random position of a 40x40 canvas (train and "
              "test).", "", report.markdown_table(canvas, metrics=("test_accuracy",),
                                                  spread="ci95",
                                                  more=studies.budget_columns(budgets)), ""]
    models = [m for m in ("cnn", "lcn") if m in set(canvas["model"])]
    for m in models:
      a = trained[(trained["model"] == m) & (trained["condition"] == "canvas 40x40")]
      b = trained[(trained["model"] == "mlp") & (trained["condition"] == "canvas 40x40")]
      d, low, high = report.diff_interval(a["test_accuracy"], b["test_accuracy"])
      gaps.append({"condition": "canvas 40x40", "a": m, "b": "mlp", "diff": d, "low": low,
                   "high": high, "verdict": report.verdict(low, high)})
      lines.append(f"- {m.upper()} − MLP on the canvas: {report.fmt_diff(d, low, high)} pp "
                   f"({report.verdict(low, high)})")
    lines.append("")
  lines += report.claims_table(checks(curves))
  lines += studies.rates_and_curves("translation", spec, rows, output_dir)
  studies.write_summary(output_dir, {"shift_curves": curves.to_dict("records"),
                                     "canvas_gaps": gaps, "command": report.command_line()})
  report.publish(output_dir, results_md, "translation", lines, rows)
  return frame, curves


def claims(results) -> list[Claim]:
  """The evidence of claim 5 (translation invariance: none for Dense, built in for Conv2D); its
  verdict: research/studies/_rules.py, from each seed's drop at a 4 px shift."""
  translation = results.summary("translation")
  curves = {(c["model"], c["condition"], int(c["shift"])): c for c in translation["shift_curves"]}
  lines = [f"{m.upper()} (no augmentation): {pct(curves[m, 'MNIST', 0]['mean'])} unshifted, "
           f"{pct(curves[m, 'MNIST', 4]['mean'], curves[m, 'MNIST', 4]['ci95'])} at a 4 px "
           f"shift" for m in ("mlp", "cnn", "lcn") if (m, "MNIST", 4) in curves]
  lines += [f"{g['a'].upper()} − MLP on translated MNIST (40x40 canvas, trained on it): {pp(g)}."
            for g in translation["canvas_gaps"]]
  return [Claim(
      5, SEED_2, "Translation invariance: Dense: None -- must relearn for every position. "
      "Conv2D: Built-in -- same filter slides everywhere.", evidence=lines)]
