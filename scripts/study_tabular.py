"""Dense vs Conv on a real table without spatial structure (sklearn's breast cancer data).

{MLP, 1-D conv} x {original column order, shuffled columns} x seeds. Writes results.csv,
results.md and tabular.png into --output_dir.

  python scripts/study_tabular.py --output_dir runs/study_tabular
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from research import report, sweep  # noqa: E402

FLAGS = flags.FLAGS


def plot(agg, path):
  plt = report.setup_matplotlib()
  fig, ax = plt.subplots(figsize=(6, 3.5))
  labels = [f"{m}\n{c}" for m, c in zip(agg["model"], agg["condition"])]
  ax.bar(range(len(agg)), 100 * agg["test_accuracy_mean"], yerr=100 * agg["test_accuracy_std"],
         capsize=3, color=["tab:blue" if m == "mlp" else "tab:orange" for m in agg["model"]])
  ax.set_xticks(range(len(agg)), labels, fontsize=8)
  low = max(0, 100 * (agg["test_accuracy_mean"] - agg["test_accuracy_std"]).min() - 5)
  ax.set_ylim(low, 100)
  ax.set_ylabel("test accuracy (%)")
  ax.set_title("Breast cancer (30 features): Dense vs 1-D conv")
  report.save_figure(fig, path)


def main(argv=None):
  """The study with the flags of research.sweep; from Python, main(["--output_dir=...", ...])."""
  return sweep.study_main(_study, argv)


def _study():
  output_dir = sweep.dirs()[1]
  _, _, rows, _ = sweep.run_study(
      "tabular", os.path.join(sweep.ROOT, "configs/sweeps/tabular.py"))
  sweep.exit_if_failed(rows, output_dir, "tabular")
  frame = report.to_frame(rows)
  agg = report.aggregate(frame)
  plot(agg, os.path.join(output_dir, "tabular.png"))
  from research import data
  ds = data.load_breast_cancer()
  lines = [f"Command: `{report.command_line()}`", "",
           f"sklearn breast cancer: {len(ds.train_labels)} train / {len(ds.test_labels)} test "
           f"examples (fixed stratified split), 30 standardized features; seeds "
           f"{sorted(set(frame['seed']))}. The test split is small: one example is "
           f"{100 / len(ds.test_labels):.2f} pp.", "", report.markdown_table(agg), "",
           "![tabular](tabular.png)"]
  report.publish(output_dir, FLAGS.results_md, "tabular", lines, rows)
  return frame, agg


if __name__ == "__main__":
  sweep.run_script(_study)
