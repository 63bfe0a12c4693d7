"""Sample efficiency: how many examples does each model need, at equal steps?

Test accuracy against the training-set size (class-balanced, nested subsets) per dataset and
model, every size trained the same steps with its rate chosen on the validation split
(configs/sweeps/sample_efficiency.py). The measured form of the seeds' "the statistical
correlations alone are sufficient" on a simple dataset. Writes results.csv, results.md,
summary.json, sample_efficiency.png and sample_efficiency_curves.png into --output_dir.

  python -m research.studies sample_efficiency --output_dir docs/studies/sample_efficiency \
      --runs_dir runs/sample_efficiency
"""
import os
import re

from research import studies
from research.sweeps import report

GAPS = (("cnn", "mlp"), ("cnn", "mlp_params"), ("lcn", "mlp"), ("cnn", "lcn"),
        ("cnn1d", "mlp_1d"))


def split_condition(condition: str) -> tuple[str, int]:
  """'MNIST n=2,000' -> ('MNIST', 2000); 'MNIST n=all' -> ('MNIST', 0)."""
  label, size = re.fullmatch(r"(.*) n=([\d,]+|all)", condition).groups()
  return label, 0 if size == "all" else int(size.replace(",", ""))


def n_train(condition: dict) -> int:
  """The examples a condition trains on: its subset, or what the validation split leaves."""
  from configs.sweeps.sample_efficiency import DATASETS
  full = {dataset: n for _, dataset, n in DATASETS.values()}[condition["dataset"]]
  return condition.get("train_subset") or full - condition.get("validation_size", 0)


def curves(frame):
  """One row per (dataset, model, size): mean, std, 95% half-width and n of test accuracy."""
  agg = report.aggregate(frame, metrics=("test_accuracy",))
  parts = agg["condition"].map(split_condition)
  agg["dataset"], agg["size"] = parts.str[0], parts.str[1]
  return agg


def gaps(frame) -> list[dict]:
  """Welch intervals of model a − model b per (dataset, size), for the pairs of GAPS."""
  out = []
  for cond in dict.fromkeys(frame["condition"]):
    cell = frame[frame["condition"] == cond]
    for a, b in GAPS:
      xa, xb = (cell[cell["model"] == m]["test_accuracy"] for m in (a, b))
      if len(xa) and len(xb):
        d, low, high = report.diff_interval(xa, xb)
        label, size = split_condition(cond)
        out.append({"dataset": label, "size": size, "a": a, "b": b, "diff": d, "low": low,
                    "high": high, "verdict": report.verdict(low, high)})
  return out


def size_table(agg, budgets: dict) -> list[str]:
  """Markdown: per dataset, one row per model, one column per size; † marks a cell still rising
  at the end of its training (studies.cell_budgets)."""
  lines = []
  for label, mine in agg.groupby("dataset", sort=False):
    sizes = sorted(set(mine["size"]), key=lambda n: n or float("inf"))
    head = [f"{n:,}" if n else f"all ({int(mine[mine['size'] == 0]['n_train'].iloc[0]):,})"
            for n in sizes]
    lines += [f"{label}:", "", "| model | " + " | ".join(head) + " | n |",
              "|---|" + "---|" * (len(sizes) + 1)]
    for model, g in mine.groupby("model", sort=False):
      g = g.set_index("size")
      cells = []
      for n in sizes:
        if n not in g.index:
          cells.append("")
          continue
        marker = (budgets.get((model, g.loc[n, "condition"])) or {}).get("marker")
        cells.append(report.fmt_interval(g.loc[n, "test_accuracy_mean"],
                                         g.loc[n, "test_accuracy_ci95"])
                     + (" †" if marker and marker.get("under_trained") else ""))
      lines.append(f"| {model} | " + " | ".join(cells) + f" | {int(g['n'].max())} |")
    lines.append("")
  return lines


def plot(agg, path):
  plt = report.setup_matplotlib()
  datasets = list(dict.fromkeys(agg["dataset"]))
  fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
  for ax, label in zip(axes[0], datasets):
    mine = agg[agg["dataset"] == label]
    full = int(mine["n_train"].max())
    for model, g in mine.groupby("model", sort=False):
      x = g["n_train"].where(g["size"] > 0, full)
      ax.errorbar(x, 100 * g["test_accuracy_mean"], yerr=100 * g["test_accuracy_ci95"].fillna(0),
                  marker="o", ms=3, capsize=2, label=model)
    ax.set_xscale("log")
    ax.set_xlabel("training examples")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(label)
    ax.legend(fontsize=8)
  report.save_figure(fig, path)


def run(sweep: str | None = None, results_md: str = "", **arguments):
  """The study; `arguments` are engine.run_sweep's (output_dir, runs_dir, executor, seeds, ...).
  Returns (frame of every row, the curves)."""
  result = studies.run_grid("sample_efficiency", sweep, **arguments)
  spec, rows, output_dir = result.spec, result.rows, result.output_dir
  frame = report.to_frame(rows)
  agg = curves(frame)
  agg["n_train"] = [n_train(spec["conditions"][c]) for c in agg["condition"]]
  budgets = studies.cell_budgets(rows)
  compared = gaps(frame)
  plot(agg, os.path.join(output_dir, "sample_efficiency.png"))
  lines = [f"Command: `{report.command_line()}`", "",
           f"Seeds {sorted(set(frame['seed']))}. Test accuracy (%, mean ± 95% t interval over "
           "seeds) per training-set size: class-balanced subsets, each holding every smaller "
           "one, of the training split left after the validation split; every size of a dataset "
           "trains the same steps, its rate chosen on the validation split (below). Trained on "
           f"{studies.cpus(rows)}.", "",
           *size_table(agg, budgets),
           "† still rising over the last 20% of its training by more than its interval "
           "(under-trained). Budgets per cell:", "", *studies.budget_table(budgets), "",
           "Differences (pp, Welch 95% interval):", "",
           "| dataset | examples | a − b | difference | |", "|---|---|---|---|---|"]
  for g in compared:
    lines.append(f"| {g['dataset']} | {g['size'] or 'all'} | {g['a']} − {g['b']} | "
                 f"{report.fmt_diff(g['diff'], g['low'], g['high'])} | {g['verdict']} |")
  lines += studies.rates_and_curves("sample_efficiency", spec, rows, output_dir,
                                    "test accuracy per evaluation (mean, 95% CI)")
  studies.write_summary(output_dir, {"curves": agg.to_dict("records"), "gaps": compared,
                                     "command": report.command_line()})
  report.publish(output_dir, results_md, "sample_efficiency", lines, rows)
  return frame, agg
