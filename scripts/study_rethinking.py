"""Rethinking generalization (Zhang et al. 2017): can the models fit noise?

Per model: training loss and accuracy over steps for true labels, random labels, shuffled
pixels, random pixels and Gaussian images (Fig. 1a style), and a table of final train accuracy,
train loss and test accuracy (mean ± std over seeds). Writes results.csv, results.md,
rethinking.png and curves.csv into --output_dir.

  TFDS_DATA_DIR=.tfds python scripts/study_rethinking.py --output_dir runs/study_rethinking
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from research import report, sweep  # noqa: E402

FLAGS = flags.FLAGS


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
  if ("mlp", "random labels") in acc:
    r = acc["mlp", "random labels"]
    out.append(("MLP fits random labels: train accuracy >= 95%", r["train_accuracy_mean"] >= 0.95,
                f"{100 * r['train_accuracy_mean']:.2f}%"))
    out.append(("MLP on random labels: test accuracy near chance (10% ± 3 pp)",
                abs(r["test_accuracy_mean"] - 0.10) <= 0.03, f"{100 * r['test_accuracy_mean']:.2f}%"))
  return out


def plot(curve_frame, path):
  plt = report.setup_matplotlib()
  models = list(dict.fromkeys(curve_frame["model"]))
  fig, axes = plt.subplots(2, len(models), figsize=(5.5 * len(models), 7), squeeze=False)
  for j, model in enumerate(models):
    sub = curve_frame[curve_frame["model"] == model]
    for cond, g in sub.groupby("condition", sort=False):
      stats = g.groupby("step")[["loss", "accuracy"]].agg(["mean", "std"]).fillna(0.0)
      steps = stats.index.to_numpy() / 1000
      for i, metric in enumerate(("loss", "accuracy")):
        mean, std = stats[metric]["mean"], stats[metric]["std"]
        scale = 100 if metric == "accuracy" else 1
        axes[i, j].plot(steps, scale * mean, label=cond)
        axes[i, j].fill_between(steps, scale * (mean - std), scale * (mean + std), alpha=0.2)
    axes[0, j].set_title(f"{model.upper()}: training loss")
    axes[1, j].set_title(f"{model.upper()}: training accuracy (batches, %)")
    axes[1, j].set_xlabel("thousands of steps")
    axes[0, j].legend(fontsize=8)
  report.save_figure(fig, path)


def main(argv=None):
  """The study with the flags of research.sweep; from Python, main(["--output_dir=...", ...])."""
  return sweep.study_main(_study, argv)


def _study():
  output_dir = sweep.dirs()[1]
  spec, _, rows, _ = sweep.run_study(
      "rethinking", os.path.join(sweep.ROOT, "configs/sweeps/rethinking.py"))
  sweep.exit_if_failed(rows, output_dir, "rethinking")
  frame = report.to_frame(rows)
  agg = report.aggregate(frame, metrics=("train_accuracy", "train_loss", "test_accuracy"))
  curve_frame = curves(rows)
  os.makedirs(output_dir, exist_ok=True)
  curve_frame.to_csv(os.path.join(output_dir, "curves.csv"), index=False)
  plot(curve_frame, os.path.join(output_dir, "rethinking.png"))
  subsets = {m: o.get("train_subset") for m, o in spec["models"].items() if m in set(frame["model"])}
  lines = [f"Command: `{report.command_line()}`", "",
           f"Dataset {frame['dataset'].iloc[0]}; training subsets {subsets} examples; seeds per "
           f"model {frame.groupby('model', sort=False)['seed'].nunique().to_dict()}. Train "
           "accuracy/loss: the final params on the whole (corrupted) training subset; test: the "
           "full clean test set (for random labels the test labels are the true ones).", "",
           report.markdown_table(agg, metrics=("train_accuracy", "train_loss", "test_accuracy"),
                                labels={"train_loss": "train loss (nats)"}), ""]
  lines += report.claims_table(checks(agg))
  lines += ["", "![rethinking generalization](rethinking.png)"]
  report.publish(output_dir, FLAGS.results_md, "rethinking", lines, rows)
  return frame, agg


if __name__ == "__main__":
  sweep.run_script(_study)
