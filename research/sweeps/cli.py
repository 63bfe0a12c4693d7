"""Runs any sweep file on Ray (or inline) and writes its results table.

  python -m research.sweeps --sweep=configs/sweeps/shuffled.py:quick --runs_dir=runs/sweeps \
      [--output_dir=DIR] [--set key=value ...] [--seeds=0,1,2] [--executor=ray|inline] \
      [--ray_address=auto|HOST:PORT|ray://HOST:10001] [--num_cpus=N] [--num_gpus=N]

What to run comes from research.grid (the sweep file's grid x seeds, one workdir per run under
--runs_dir), how to run it from research.executors (a local Ray instance started here by
default, an existing cluster with --ray_address, or this process with --executor=inline), how to
report it from research.report. Writes OUTPUT_DIR/results.csv (one row per run and per test-time
evaluation; failed runs with their error line) and results.md (mean ± std over seeds).

Exit status: 0 when every run finished; 1 when some failed (the others finish first; a summary
names them); 2 for bad input; 130 on Ctrl-C (rerun the same command to resume). The study
scripts (scripts/study_*.py) take the same flags and add their analysis and plots.
"""
import os
import sys


from absl import app, flags

from research import UserError, cli
from research.sweeps import evals, executors, grid, records, report

FLAGS = flags.FLAGS
flags.DEFINE_string("sweep", None, "Sweep file[:arg], e.g. configs/sweeps/shuffled.py:quick.")
flags.DEFINE_string("runs_dir", "", "Run workdirs (default OUTPUT_DIR/runs); sweeps that share "
                    "it share identical runs.")
flags.DEFINE_string("output_dir", "", "results.csv and results.md (default RUNS_DIR).")
flags.DEFINE_multi_string("set", [], "KEY=VALUE: override a config field in every run, e.g. "
                          "--set dataset=cifar10 (repeatable).")
flags.DEFINE_list("seeds", [], "Comma-separated seeds (default: the sweep file's).")
flags.DEFINE_enum("executor", "ray", ["ray", "inline"],
                  "ray: each run a Ray task in its own worker; inline: one after another in "
                  "this process (debugging).")
flags.DEFINE_string("ray_address", "", "Join this Ray cluster (auto, HOST:PORT, "
                    "ray://HOST:10001) instead of starting a local one.")
flags.DEFINE_float("num_cpus", None, "CPUs per run (default: the sweep file's, else 1 on "
                   "GPU/TPU nodes and all of a CPU node's).")
flags.DEFINE_float("num_gpus", None, "GPUs per run (default: the sweep file's, else 1 where "
                   "the cluster has GPUs).")
flags.DEFINE_integer("max_retries", 3, "Ray retries of a run whose worker died (SIGKILL, lost "
                     "node); a run's own error is never retried.")
flags.DEFINE_string("compilation_cache", "auto", "JAX's persistent compilation cache for the "
                    "runs: auto (a directory in each machine's temp dir), a path, or '' (none).")
flags.DEFINE_string("results_md", "", "Also write the table into this markdown file's section "
                    "for the study.")
flags.DEFINE_string("records", "auto", "Run records (research/sweeps/records.py): finished runs missing "
                    "from --runs_dir are restored from this file instead of trained again, and "
                    "every finished run is added to it. auto: OUTPUT_DIR/runs.jsonl; '': none.")


def parse_flags(argv: list[str]) -> None:
  """Parses `argv` (no program name) into FLAGS afresh; for study scripts called from tests."""
  FLAGS.unparse_flags()
  _parse([sys.argv[0]] + list(argv))


def _parse(argv):
  try:
    return FLAGS(argv)
  except flags.Error as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    print(f"error: {lines[0] if lines else e}", file=sys.stderr)
    sys.exit(2)


def dirs() -> tuple[str, str]:
  """(runs_dir, output_dir) from the flags: each defaults from the other."""
  if not (FLAGS.runs_dir or FLAGS.output_dir):
    raise UserError("give --runs_dir (run workdirs) or --output_dir (the results table)")
  output_dir = FLAGS.output_dir or FLAGS.runs_dir
  runs_dir = FLAGS.runs_dir or os.path.join(output_dir, "runs")
  return os.path.abspath(runs_dir), output_dir


def records_file() -> str:
  if FLAGS.records != "auto":
    return FLAGS.records
  return os.path.join(dirs()[1], "runs.jsonl")


def _executor(spec: dict, runs_dir: str, log, seen: list):
  """execute(runs) -> outcomes with the flags' executor; runs missing from runs_dir are first
  restored from the records file, and the finished ones are added to it after each batch;
  `seen` collects every run executed (for the final save, after the evaluations)."""
  options = ray_options(spec) if FLAGS.executor == "ray" else {}
  cache = None if FLAGS.compilation_cache == "auto" else FLAGS.compilation_cache
  path = records_file()

  def execute(runs):
    restored = records.restore(path, runs_dir, [r.name for r in runs])
    if restored:
      log(f"  {len(restored)} finished runs restored from {path}")
    seen.extend(r.name for r in runs)
    try:
      return executors.run_runs(runs, runs_dir, FLAGS.executor, log=log,
                                compilation_cache=cache, **options)
    finally:  # what finished is kept even when the sweep stops here (Ctrl-C, a failure)
      if path:
        records.save(path, runs_dir, [r.name for r in runs])

  return execute


def save_records(runs_dir: str, names, log=print) -> None:
  path = records_file()
  if path:
    n = records.save(path, runs_dir, names)
    log(f"run records: {n} runs in {path}")


def ray_options(spec: dict) -> dict:
  """Per-run resources and the cluster address: flags first, then the sweep file's."""
  wanted = dict(spec.get("resources", {}))
  if FLAGS.num_cpus is not None:
    wanted["num_cpus"] = FLAGS.num_cpus
  if FLAGS.num_gpus is not None:
    wanted["num_gpus"] = FLAGS.num_gpus
  unknown = set(wanted) - {"num_cpus", "num_gpus", "resources"}
  if unknown:
    raise UserError(f"sweep file resources: unknown keys {sorted(unknown)} (num_cpus, "
                    "num_gpus, resources)")
  return {"address": FLAGS.ray_address, "max_retries": FLAGS.max_retries, **wanted}


def run_study(study: str, default_sweep: str | None = None, log=print):
  """The shared part of `python -m research.sweeps` and every study script: expand the sweep,
  choose learning rates on the validation split (when the sweep file has `lr_search`), run it,
  score its evals. Returns (spec, runs, rows, runs_dir); rows of failed runs have status
  'failed' and their error line; with a search, spec["lr_search_rows"] holds every candidate's
  validation score and which one was chosen (report.lr_search_table)."""
  runs_dir, output_dir = dirs()
  sweep_file = FLAGS.sweep or default_sweep
  if not sweep_file:
    raise UserError("give --sweep=configs/sweeps/FILE.py[:arg]")
  spec = grid.load_sweep(sweep_file)
  overrides = grid.parse_set(FLAGS.set)
  seeds = grid.parse_seeds(FLAGS.seeds)
  grid.check_set_overrides(grid.expand(spec, overrides, seeds), overrides)
  os.makedirs(output_dir, exist_ok=True)
  seen = []
  execute = _executor(spec, runs_dir, log, seen)
  if spec.get("lr_search") and "learning_rate" not in overrides:
    spec = choose_learning_rates(spec, overrides, execute, log=log, study=study)
  runs = grid.expand(spec, overrides, seeds)
  log(f"{study}: {len(runs)} runs in {runs_dir} ({FLAGS.executor})")
  rows = result_rows(study, runs, execute(runs), runs_dir)
  rows += evals.run_evals(spec, runs, rows, runs_dir, log=log)
  save_records(runs_dir, seen, log)
  return spec, runs, rows, runs_dir


def run_stage(study: str, spec: dict, runs: list, runs_dir: str, log=print) -> list[dict]:
  """Runs (or reads back) `runs` that a study script built from finished runs (a second stage,
  e.g. runs that start from other runs' checkpoints) with the flags' executor; rows as
  run_study's."""
  log(f"{study}: {len(runs)} runs in {runs_dir} ({FLAGS.executor})")
  seen = []
  outcomes = _executor(spec, runs_dir, log, seen)(runs)
  save_records(runs_dir, seen, log)
  return result_rows(study, runs, outcomes, runs_dir)


def result_rows(study: str, runs: list, outcomes: dict, runs_dir: str) -> list[dict]:
  return [report.result_row(study, run, outcomes[run.name]["results"],
                            os.path.join(runs_dir, run.name), status=outcomes[run.name]["status"],
                            error=outcomes[run.name].get("error", ""),
                            run_seconds=outcomes[run.name].get("seconds")) for run in runs]


def choose_learning_rates(spec: dict, overrides: dict, execute, log=print, study="") -> dict:
  """The sweep's learning rate per (model, condition), chosen on the validation split.

  spec["lr_search"] = {"learning_rates": [...ascending...], "seed": 0, "extend": 2}: every grid
  cell trains once per candidate (that seed, the cell's full budget) and keeps the rate with the
  best final validation accuracy (ties: the smaller rate). A cell whose best rate is the largest
  (smallest) of its candidates gets the next rate beyond it (continuing the grid's pattern:
  3e-4, 1e-3, 3e-3 -> 1e-2 -> 3e-2), up to `extend` times, so the choice is bracketed rather than cut off by the grid. The test split plays no
  part. Returns a copy of the spec whose model_condition_overrides carry the choices, so the
  cell's run at that seed is the search's own run (same overrides, same workdir: trained once).
  """
  search = spec["lr_search"]
  rates, seed = sorted(float(r) for r in search["learning_rates"]), int(search.get("seed", 0))
  extend = int(search.get("extend", 2))
  if not rates:
    raise UserError("lr_search: give learning_rates")
  factor = rates[-1] / rates[-2] if len(rates) > 1 else 3.0
  cells = grid.expand(spec, overrides, [seed])
  if cells[0].config().validation_size <= 0:
    raise UserError("lr_search needs a validation split: set validation_size > 0 in the sweep "
                    "(the test split never chooses anything)")
  keys = [(c.model, c.condition) for c in cells]
  candidates = {key: list(rates) for key in keys}
  runs = {}  # (key, lr) -> Run

  def run_for(key, lr):
    if (key, lr) not in runs:
      for r in grid.expand(spec, {**overrides, "learning_rate": lr}, [seed]):
        runs[(r.model, r.condition), lr] = r
    return runs[key, lr]

  outcomes, chosen = {}, {}
  for round_ in range(extend + 1):
    todo = [run_for(key, lr) for key in keys for lr in candidates[key]]
    log(f"{study}: learning rates on the validation split, round {round_ + 1}: "
        f"{len(todo)} runs (seed {seed})")
    outcomes.update(execute(todo))
    grown = False
    for key in keys:
      scores = {lr: outcomes[run_for(key, lr).name] for lr in candidates[key]}
      finite = {lr: o["results"]["validation_accuracy"] for lr, o in scores.items()
                if o["status"] != "failed" and "validation_accuracy" in o["results"]}
      if not finite:
        raise UserError(f"lr_search: every candidate of {key} failed (see the runs' train.log)")
      best = max(finite, key=lambda lr: (finite[lr], -lr))
      chosen[key] = best
      c = candidates[key]
      if round_ < extend and best == c[-1]:
        # The pattern continues: two steps on from c[-2] (1e-3, 3e-3 -> 1e-2), else one factor.
        c.append(float(f"{(c[-2] * c[-1] / c[-3] if len(c) > 2 else best * factor):.3g}"))
        grown = True
      elif round_ < extend and best == c[0] and len(c) > 1:
        c.insert(0, float(f"{(c[1] * c[0] / c[2] if len(c) > 2 else best / factor):.3g}"))
        grown = True
    if not grown:
      break
  table = []
  for key in keys:
    for lr in candidates[key]:
      run = run_for(key, lr)
      out = outcomes.get(run.name)
      if out is None:  # a candidate added in the last round was never needed
        continue
      acc = out["results"].get("validation_accuracy") if out["status"] != "failed" else None
      table.append({"model": key[0], "condition": key[1], "learning_rate": lr, "seed": seed,
                    "validation_accuracy": acc, "status": out["status"],
                    "error": out.get("error", ""), "workdir": run.name,
                    "chosen": chosen[key] == lr})
  new = dict(spec)
  mco = {k: dict(v) for k, v in spec.get("model_condition_overrides", {}).items()}
  for key, lr in chosen.items():
    mco.setdefault(key, {})["learning_rate"] = lr
  new["model_condition_overrides"] = mco
  new["lr_search_rows"] = table
  return new


def exit_if_failed(rows: list[dict], output_dir: str, study: str) -> None:
  """Writes the table of what there is and exits 1 with a summary when runs failed."""
  bad = report.failed(rows)
  if not bad:
    return
  report.write_outputs(output_dir, rows, report.sweep_markdown(rows, study))
  print(f"error: {len(bad)} of {sum(r.get('status') != 'eval' for r in rows)} runs failed "
        f"(table in {output_dir}/results.csv; fix and rerun the same command: finished runs "
        "are read back):", file=sys.stderr)
  for r in bad:
    print(f"  {os.path.basename(r['workdir'])}: {r['error']}", file=sys.stderr)
  sys.exit(1)


def study_main(body, argv=None):
  """Runs `body()` (which reads FLAGS) with the sweep's exits: bad input -> one error line and
  status 2, Ctrl-C -> status 130 with how to resume. `argv` (no program name), when given, is
  parsed into FLAGS first: a study script's main(["--output_dir=...", ...]) from Python."""
  if argv is not None:
    parse_flags(argv)
  try:
    return body()
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print("\ninterrupted: workers stopped, checkpoints kept; rerun the same command to resume",
          file=sys.stderr)
    sys.exit(130)


def _generic():
  name = grid.slug(os.path.splitext(os.path.basename((FLAGS.sweep or "").partition(":")[0]))[0])
  _, _, rows, runs_dir = run_study(name)
  _, output_dir = dirs()
  exit_if_failed(rows, output_dir, name)
  markdown = report.sweep_markdown(rows, name)
  report.write_outputs(output_dir, rows, markdown)
  if FLAGS.results_md:
    report.update_markdown_section(FLAGS.results_md, name, markdown, asset_dir=output_dir)
  print(markdown)
  return rows


def main(argv=None):
  """`python -m research.sweeps FLAGS`; from Python, main(["--sweep=...", ...])."""
  if argv is not None:
    parse_flags(argv)
    return study_main(_generic)
  run_script(_generic)


def run_script(body) -> None:
  """A `__main__`: absl flag parsing, then study_main(body); exit status 0 when it returns."""

  def main_(argv):
    from absl import logging
    logging.get_absl_handler().addFilter(cli.QuietLibraries())  # inline runs log here
    if len(argv) > 1:
      print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
      sys.exit(2)
    study_main(body)

  app.run(main_, flags_parser=_parse)


if __name__ == "__main__":
  main()
