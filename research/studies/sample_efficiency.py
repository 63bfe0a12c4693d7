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
from research.studies import _axis
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


def curves(frame, spec):
  """One row per (dataset, model, size): mean, std, 95% half-width and n of test accuracy;
  `n_train` and `x` the examples trained on."""
  agg = _axis.along(frame, split_condition)
  agg["dataset"], agg["size"] = agg["group"], agg["point"]
  agg["n_train"] = [n_train(spec["conditions"][c]) for c in agg["condition"]]
  agg["x"] = agg["n_train"]
  return agg


def gaps(frame) -> list[dict]:
  """Welch intervals of model a − model b per (dataset, size), for the pairs of GAPS."""
  return [{**g, "dataset": g["group"], "size": g["point"]}
          for g in _axis.gaps(frame, GAPS, split_condition)]


def head(rows) -> str:
  """A size's column head: '2,000', or 'all (55,000)'."""
  size, n = int(rows["size"].iloc[0]), int(rows["n_train"].iloc[0])
  return f"{size:,}" if size else f"all ({n:,})"


def run(sweep: str | None = None, results_md: str = "", **arguments):
  """The study; `arguments` are engine.run_sweep's (output_dir, runs_dir, executor, seeds, ...).
  Returns (frame of every row, the curves)."""
  result = studies.run_grid("sample_efficiency", sweep, **arguments)
  spec, rows, output_dir = result.spec, result.rows, result.output_dir
  frame = report.to_frame(rows)
  agg = curves(frame, spec)
  budgets = studies.cell_budgets(rows)
  compared = gaps(frame)
  _axis.plot(agg, os.path.join(output_dir, "sample_efficiency.png"), "training examples")
  lines = [f"Command: `{report.command_line()}`", "",
           f"Seeds {sorted(set(frame['seed']))}. Test accuracy (%, mean ± 95% t interval over "
           "seeds) per training-set size: class-balanced subsets, each holding every smaller "
           "one, of the training split left after the validation split; every size of a dataset "
           "trains the same steps, its rate chosen on the validation split (below). Trained on "
           f"{studies.cpus(rows)}.", "",
           *_axis.table(agg, budgets, head),
           "† still rising over the last 20% of its training by more than its interval "
           "(under-trained). Budgets per cell:", "", *studies.budget_table(budgets), "",
           "Differences:", "",
           *_axis.gap_lines(compared, ("dataset", "examples"), lambda n: f"{n:,}" if n else "all")]
  lines += studies.rates_and_curves("sample_efficiency", spec, rows, output_dir,
                                    "test accuracy per evaluation (mean, 95% CI)")
  studies.write_summary(output_dir, {"curves": agg.to_dict("records"), "gaps": compared,
                                     "command": report.command_line()})
  report.publish(output_dir, results_md, "sample_efficiency", lines, rows)
  return frame, agg


def notes(results) -> list[tuple[float, list[str]]]:
  """Test accuracy against training-set size per dataset and model, and the CNN's lead over the
  seed MLP at each size, when the study has run (after claim 4: what the correlations alone
  give a dense net at each size)."""
  summary = results.optional_summary("sample_efficiency")
  if not summary:
    return []
  lines = ["", "## How many examples each model needs (sample efficiency)", "",
           "docs/studies/sample_efficiency: class-balanced nested subsets of the training split, "
           "every size of a dataset trained the same steps, rates chosen on validation per cell; "
           "test accuracy, mean ± 95% interval over seeds (uncorrected):", ""]
  size = lambda n: f"{n:,}" if n else "all"
  for dataset in dict.fromkeys(c["dataset"] for c in summary["curves"]):
    cells = [c for c in summary["curves"] if c["dataset"] == dataset]
    per_model = []
    for model in dict.fromkeys(c["model"] for c in cells):
      points = sorted((c for c in cells if c["model"] == model),
                      key=lambda c: c["size"] or float("inf"))
      per_model.append(f"{model} " + ", ".join(
          f"{size(c['size'])}: " + report.fmt_interval(c["test_accuracy_mean"],
                                                       c["test_accuracy_ci95"], digits=1)
          for c in points))
    gaps = sorted((g for g in summary["gaps"] if g["dataset"] == dataset and g["b"] in (
        "mlp", "mlp_1d") and g["a"] in ("cnn", "cnn1d")), key=lambda g: g["size"] or float("inf"))
    lead = "; conv − MLP " + ", ".join(
        f"{size(g['size'])}: {report.fmt_diff(g['diff'], g['low'], g['high'])} pp"
        for g in gaps) if gaps else ""
    lines.append(f"- {dataset}: " + "; ".join(per_model) + lead + ".")
  return [(3.6, lines)]
