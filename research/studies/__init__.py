"""The studies: one module per question, `research/studies/NAME.py`, found by its name.

  python -m research.studies NAME --output_dir=docs/studies/NAME [the sweep flags]
  python -m research.studies.verdict     # docs/verdict.md and the README's answer

A study module has
  run(**arguments)   runs the study and writes OUTPUT_DIR/{results.csv, results.md, plots,
                     summary.json}; a study with a grid runs configs/sweeps/NAME.py through
                     `run_grid` (its arguments are engine.run_sweep's) and analyses the rows;
  OPTIONS            (optional) {argument: (default, help)}: command-line flags of its own;
  claims(results)    (optional) the seeds' claims it judges: [verdict.Claim] for docs/verdict.md;
  notes(results)     (optional) [(order, markdown lines)] for docs/verdict.md after the claims.
Adding a study is adding configs/sweeps/NAME.py (when it trains) and research/studies/NAME.py.
Modules whose names start with '_' are helpers shared by studies; `verdict` writes the verdict.
"""
import importlib
import json
import os
import pkgutil

from research import UserError

NOT_STUDIES = ("verdict",)


def names() -> list[str]:
  """Every study, by module name."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__)
                if not m.name.startswith("_") and m.name not in NOT_STUDIES)


def load(name: str):
  """The study module `name` (research/studies/NAME.py)."""
  if name not in names():
    raise UserError(f"no study {name!r}; the studies: {', '.join(names())}")
  return importlib.import_module(f"{__name__}.{name}")


def sweep_file(name: str) -> str:
  """configs/sweeps/NAME.py, wherever the configs package is installed."""
  import configs.sweeps
  return os.path.join(os.path.dirname(configs.sweeps.__file__), f"{name}.py")


def writer(name: str) -> str:
  """The command that writes a study's files in docs/studies/NAME."""
  return f"python -m research.studies {name} --output_dir docs/studies/{name}"


def run_grid(name: str, sweep: str | None = None, **arguments):
  """The shared first half of a study: its sweep (default configs/sweeps/NAME.py) run or read
  back with engine.run_sweep's `arguments`; stops with engine.RunsFailed (the table of what there
  is written) when runs failed. Returns the engine.SweepResult."""
  from research.sweeps import engine
  result = engine.run_sweep(sweep or sweep_file(name), name=name, **arguments)
  engine.stop_on_failures(result.rows, result.output_dir, name)
  return result


def write_summary(output_dir: str, summary: dict) -> None:
  """OUTPUT_DIR/summary.json: the numbers the verdict reads."""
  with open(os.path.join(output_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1, default=float)


def cpus(rows: list[dict]) -> str:
  """The CPUs that trained the rows' runs, as each run's results.json names them."""
  names = set()
  for r in rows:
    path = os.path.join(r.get("workdir") or "", "results.json")
    if r.get("status") not in ("failed", "eval") and os.path.isfile(path):
      with open(path) as f:
        names.add(json.load(f).get("cpu") or "a CPU its results.json does not name")
  return ", ".join(sorted(names)) or "no CPU (no run trained)"


def budget(config: dict, steps) -> str:
  """'2,145 steps of batch 128 (5 epochs), adam cosine' from a run's config and its steps."""
  epochs = (f" ({config['num_epochs']} epochs)" if config.get("num_train_steps", -1) <= 0
            and "num_epochs" in config else "")
  steps = f"{int(steps):,}" if steps is not None and steps == steps else "?"
  return (f"{steps} steps of batch {config.get('batch_size', '?')}{epochs}, "
          f"{config.get('optimizer', '?')} {config.get('lr_schedule', '')}").rstrip()


def cell_budgets(rows: list[dict], records: dict | None = None) -> dict:
  """{(model, condition): {"budget": text, "under-trained?": text, "marker": dict}} of the rows'
  trained cells: each cell's budget (from its first run's config.json) and its under-trained
  marker (report.under_trained_cells of its test curves; report.under_trained_mark as text).
  The run files are read from the workdirs, or from `records` (records.read of a study's
  runs.jsonl) for runs not on this machine. Every study's tables show the two texts."""
  from research.sweeps import report
  trained = [r for r in rows if r.get("status") not in ("failed", "eval") and r.get("workdir")]
  curves = report.learning_curves(trained, "test", records)
  markers = report.under_trained_cells(curves) if len(curves) else {}
  out = {}
  for r in trained:
    key = (r["model"], r["condition"])
    if key in out:
      continue
    path = os.path.join(r["workdir"], "config.json")
    if os.path.isfile(path):
      with open(path) as f:
        config = json.load(f)
    else:
      name = os.path.basename(os.path.normpath(r["workdir"]))
      config = json.loads((records or {}).get(name, {}).get("config.json", "{}"))
    out[key] = {"budget": budget(config, r["steps"]),
                "under-trained?": report.under_trained_mark(markers.get(key)),
                "marker": markers.get(key)}
  for r in (r for r in rows if r.get("status") == "eval"):  # scores other runs' params
    out.setdefault((r["model"], r["condition"]), {"budget": "— (test-time evaluation)",
                                                  "under-trained?": "—", "marker": None})
  return out


BUDGET_HEAD = ("budget", "under-trained?")


def budget_columns(budgets: dict) -> dict:
  """cell_budgets as report.markdown_table's `more` columns: {(model, condition): {"budget",
  "under-trained?"}}."""
  return {key: {h: cell[h] for h in BUDGET_HEAD} for key, cell in budgets.items()}


def budget_cells(budgets: dict, model: str, condition: str) -> list[str]:
  """The budget and under-trained cells of one row of a study's own table."""
  cell = budgets.get((model, condition))
  return [cell[h] for h in BUDGET_HEAD] if cell else ["—", "—"]


def budget_table(budgets: dict) -> list[str]:
  """Markdown: every trained cell's budget and under-trained mark, for a study whose tables
  are not one row per cell."""
  lines = ["| model | condition | " + " | ".join(BUDGET_HEAD) + " |", "|---|---|---|---|"]
  return lines + [f"| {m} | {c} | " + " | ".join(budget_cells(budgets, m, c)) + " |"
                  for m, c in budgets]


def rates_and_curves(name: str, spec: dict, rows: list[dict], output_dir: str,
                     title: str = "test accuracy per epoch (mean, 95% CI)") -> list[str]:
  """The end of a study's page: its learning-rate search table, its plot NAME.png and the test
  curves of its trained runs, plotted here into NAME_curves.png."""
  from research.sweeps import report
  report.plot_learning_curves(
      report.learning_curves([r for r in rows if r.get("status") != "eval"], "test"),
      os.path.join(output_dir, f"{name}_curves.png"), title)
  return ["", "Learning rates (final validation accuracy %, seed 0; bold: chosen):", "",
          *report.lr_search_table(spec.get("lr_search_rows", [])), "",
          f"![{name.replace('_', ' ')}]({name}.png)", "", f"![learning curves]({name}_curves.png)"]
