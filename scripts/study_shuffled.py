"""Shuffled pixels: does Dense ignore spatial structure, and does a CNN collapse?

{MLP, CNN, LCN} x {original, shuffled-and-retrained, trained-normal-tested-shuffled} x seeds.
One fixed pixel permutation (its own seed) for every run. Writes results.csv, results.md and
shuffled.png into --output_dir.

  TFDS_DATA_DIR=.tfds python scripts/study_shuffled.py --output_dir runs/study_shuffled
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from research import report, sweep  # noqa: E402

FLAGS = flags.FLAGS

CONDITIONS = ("original", "shuffled (retrained)", "normal -> shuffled test")


def checks(agg) -> list[tuple[str, bool, str]]:
  """The issue's claims, evaluated on the aggregated table: (claim, holds, measured)."""
  acc = {(r["model"], r["condition"]): r["test_accuracy_mean"] for _, r in agg.iterrows()}
  out = []
  if ("mlp", "original") in acc and ("mlp", "shuffled (retrained)") in acc:
    d_mlp = 100 * (acc["mlp", "shuffled (retrained)"] - acc["mlp", "original"])
    out.append(("MLP shuffled-and-retrained within 0.5 pp of original", abs(d_mlp) <= 0.5,
                f"{d_mlp:+.2f} pp"))
    if ("cnn", "original") in acc and ("cnn", "shuffled (retrained)") in acc:
      d_cnn = 100 * (acc["cnn", "shuffled (retrained)"] - acc["cnn", "original"])
      out.append(("CNN shuffled-and-retrained drops more than the MLP", d_cnn < d_mlp,
                  f"CNN {d_cnn:+.2f} pp vs MLP {d_mlp:+.2f} pp"))
  for model in ("cnn", "lcn", "mlp"):
    if (model, "normal -> shuffled test") in acc:
      a = 100 * acc[model, "normal -> shuffled test"]
      if model == "cnn":
        out.append(("CNN trained normal, tested shuffled < 30%", a < 30, f"{a:.2f}%"))
      else:
        out.append((f"{model.upper()} trained normal, tested shuffled (for reference)", None,
                    f"{a:.2f}%"))
  return out


def plot(agg, path):
  plt = report.setup_matplotlib()
  models = list(dict.fromkeys(agg["model"]))
  fig, ax = plt.subplots(figsize=(7, 4))
  width = 0.8 / len(CONDITIONS)
  for j, cond in enumerate(CONDITIONS):
    sub = agg[agg["condition"] == cond].set_index("model").reindex(models)
    ax.bar([i + (j - 1) * width for i in range(len(models))], 100 * sub["test_accuracy_mean"],
           width, yerr=100 * sub["test_accuracy_std"], capsize=3, label=cond)
  ax.set_xticks(range(len(models)), [m.upper() for m in models])
  ax.set_ylabel("test accuracy (%)")
  ax.axhline(10, color="gray", lw=0.8, ls=":")
  ax.set_ylim(0, 100)
  ax.set_title(f"Shuffled pixels on {agg.attrs.get('dataset', 'MNIST')} (mean ± std over seeds)")
  ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize=8)
  report.save_figure(fig, path)


def main(argv=None):
  """The study with the flags of research.sweep; from Python, main(["--output_dir=...", ...])."""
  return sweep.study_main(_study, argv)


def _study():
  output_dir = sweep.dirs()[1]
  _, runs, rows, _ = sweep.run_study(
      "shuffled", os.path.join(sweep.ROOT, "configs/sweeps/shuffled.py"))
  sweep.exit_if_failed(rows, output_dir, "shuffled")
  frame = report.to_frame(rows)
  agg = report.aggregate(frame)
  agg.attrs["dataset"] = str(frame["dataset"].iloc[0])
  plot(agg, os.path.join(output_dir, "shuffled.png"))
  lines = [f"Command: `{report.command_line()}`", "",
           f"Dataset {agg.attrs['dataset']}, seeds {sorted(set(frame['seed']))}; "
           "one fixed pixel permutation (permutation_seed 0). 'normal -> shuffled test' scores "
           "the params of the 'original' runs on permuted test images (no retraining).", "",
           report.markdown_table(agg), ""] + report.claims_table(checks(agg))
  lines += ["", "![shuffled pixels](shuffled.png)"]
  report.publish(output_dir, FLAGS.results_md, "shuffled", lines, rows)
  return frame, agg


if __name__ == "__main__":
  sweep.run_script(_study)
