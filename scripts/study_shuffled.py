"""Shuffled pixels: does Dense ignore spatial structure, and does a CNN collapse?

{MLP, CNN, LCN} x {original, shuffled-and-retrained, trained-normal-tested-shuffled} x seeds.
One fixed pixel permutation (its own seed) for every run. Writes results.csv, results.md and
shuffled.png into --output_dir.

  TFDS_DATA_DIR=.tfds python scripts/study_shuffled.py --output_dir runs/study_shuffled
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from research.sweeps import report, cli as sweep  # noqa: E402

FLAGS = flags.FLAGS

CONDITIONS = ("MNIST", "MNIST shuffled", "normal -> shuffled test")


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


def main(argv=None):
  """The study with the flags of research.sweeps; from Python, main(["--output_dir=...", ...])."""
  return sweep.study_main(_study, argv)


def _study():
  output_dir = sweep.dirs()[1]
  spec, runs, rows, _ = sweep.run_study(
      "shuffled", os.path.join(sweep.ROOT, "configs/sweeps/shuffled.py"))
  sweep.exit_if_failed(rows, output_dir, "shuffled")
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
  with open(os.path.join(output_dir, "summary.json"), "w") as f:
    json.dump({"cells": [{"model": r["model"], "condition": r["condition"],
                          "mean": r["test_accuracy_mean"], "ci95": r["test_accuracy_ci95"],
                          "n": int(r["n"])} for _, r in agg.iterrows()],
               "effects": found, "epochs": epochs, "command": report.command_line()},
              f, indent=1, default=float)
  lcn_seeds = sorted(set(frame[frame['model'] == 'lcn']['seed']))
  lcn = (f" (LCN {lcn_seeds})" if lcn_seeds else " (no LCN: its shuffled-pixels cell at equal "
         "budget is in the harder-task study, on Fashion-MNIST)")
  lines = [f"Command: `{report.command_line()}`", "",
           f"Dataset {agg.attrs['dataset']}, seeds {sorted(set(frame['seed']))}{lcn}, {', '.join(map(str, epochs))} epochs for every "
           "model, learning rates chosen on a 5,000-image validation split (below); one fixed "
           "pixel permutation (permutation_seed 0). 'normal -> shuffled test' scores the params "
           "of the 'MNIST' runs on permuted test images (no retraining).", "",
           report.markdown_table(agg, metrics=("test_accuracy",), spread="ci95"), "",
           *report.differences_table(found), "",
           "Learning rates (final validation accuracy %, seed 0; bold: chosen):", "",
           *report.lr_search_table(spec.get("lr_search_rows", [])), "",
           "![shuffled pixels](shuffled.png)", "", "![learning curves](shuffled_curves.png)"]
  report.publish(output_dir, FLAGS.results_md, "shuffled", lines, rows)
  return frame, agg


if __name__ == "__main__":
  sweep.run_script(_study)
