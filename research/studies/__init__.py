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
