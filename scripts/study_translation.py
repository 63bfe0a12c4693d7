"""Translation: is a Conv net's tolerance to shifted digits built in, and is Dense's absent?

Per model: test accuracy vs a fixed shift of the test images (0-10 px; mean over the
directions in the sweep file), trained without and with random-shift augmentation; and
translated MNIST (each digit at a random position of a 40x40 canvas, train and test). Writes
results.csv, results.md and translation.png into --output_dir.

  TFDS_DATA_DIR=.tfds python scripts/study_translation.py --output_dir runs/study_translation
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from absl import flags  # noqa: E402

from research import report, sweep  # noqa: E402

FLAGS = flags.FLAGS


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
  curves = per_seed.groupby(["model", "condition", "shift"], sort=False)["test_accuracy"].agg(
      ["mean", "std", "count"]).reset_index().fillna({"std": 0.0})
  return curves.sort_values("shift", kind="stable")  # groups keep their first-seen order


def curve_table(curves) -> str:
  shifts = sorted(set(curves["shift"]))
  lines = ["| model | training | " + " | ".join(f"{s} px" for s in shifts) + " | n |",
           "|" + "---|" * (len(shifts) + 3)]
  for (model, cond), g in curves.groupby(["model", "condition"], sort=False):
    g = g.set_index("shift")
    cells = [f"{100 * g.loc[s, 'mean']:.1f} ± {100 * g.loc[s, 'std']:.1f}" if s in g.index
             else "" for s in shifts]
    lines.append(f"| {model} | {cond} | " + " | ".join(cells) + f" | {int(g['count'].max())} |")
  return "\n".join(lines)


def checks(curves):
  acc = {(r["model"], r["condition"], r["shift"]): r["mean"] for _, r in curves.iterrows()}
  out = []
  if all((m, "original", s) in acc for m in ("mlp", "cnn") for s in (0, 4)):
    drop = {m: 100 * (acc[m, "original", 0] - acc[m, "original", 4]) for m in ("mlp", "cnn")}
    out.append(("at a 4 px shift the MLP loses more accuracy than the CNN (no augmentation)",
                drop["mlp"] > drop["cnn"],
                f"MLP -{drop['mlp']:.1f} pp, CNN -{drop['cnn']:.1f} pp"))
  return out


def plot(curves, canvas, path):
  plt = report.setup_matplotlib()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
  colors = {"mlp": "tab:blue", "cnn": "tab:orange", "lcn": "tab:green"}
  for (model, cond), g in curves.groupby(["model", "condition"], sort=False):
    axes[0].errorbar(g["shift"], 100 * g["mean"], yerr=100 * g["std"], capsize=2, marker="o",
                     ms=3, color=colors.get(model), ls="-" if cond == "original" else "--",
                     label=f"{model.upper()}, {'no augmentation' if cond == 'original' else cond}")
  axes[0].set_xlabel("test shift (px, mean over directions)")
  axes[0].set_ylabel("test accuracy (%)")
  axes[0].set_ylim(0, 100)
  axes[0].axhline(10, color="gray", lw=0.8, ls=":")
  axes[0].legend(fontsize=8)
  axes[0].set_title("Accuracy vs shift")
  if len(canvas):
    x = np.arange(len(canvas))
    axes[1].bar(x, 100 * canvas["test_accuracy_mean"], yerr=100 * canvas["test_accuracy_std"],
                capsize=3, color=[colors.get(m) for m in canvas["model"]])
    axes[1].set_xticks(x, [m.upper() for m in canvas["model"]])
    axes[1].set_ylim(0, 100)
    axes[1].set_title("Translated MNIST, 40x40 canvas")
  report.save_figure(fig, path)


def main(argv=None):
  """The study with the flags of research.sweep; from Python, main(["--output_dir=...", ...])."""
  return sweep.study_main(_study, argv)


def _study():
  output_dir = sweep.dirs()[1]
  _, _, rows, _ = sweep.run_study(
      "translation", os.path.join(sweep.ROOT, "configs/sweeps/translation.py"))
  sweep.exit_if_failed(rows, output_dir, "translation")
  frame = report.to_frame(rows)
  curves = shift_curves(frame)
  trained = frame[frame["eval"].isna()] if "eval" in frame.columns else frame
  canvas = report.aggregate(trained[trained["condition"].str.startswith("canvas")])
  plot(curves, canvas, os.path.join(output_dir, "translation.png"))
  lines = [f"Command: `{report.command_line()}`", "",
           f"Dataset {frame['dataset'].iloc[0]}, seeds {sorted(set(frame['seed']))}. Test "
           "accuracy (%) with every test image shifted by k px (zero fill), mean over the "
           "directions of configs/sweeps/translation.py, then mean ± std over seeds. 'augment' runs trained on "
           "random shifts in [-4, 4] px. Steps and params per model as in the shuffled study.",
           "", curve_table(curves), ""]
  if len(canvas):
    lines += ["Translated MNIST: each digit at a random position of a 40x40 canvas (train and "
              "test).", "", report.markdown_table(canvas), ""]
  lines += report.claims_table(checks(curves))
  lines += ["", "![translation](translation.png)"]
  report.publish(output_dir, FLAGS.results_md, "translation", lines, rows)
  return frame, curves


if __name__ == "__main__":
  sweep.run_script(_study)
