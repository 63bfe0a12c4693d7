"""A sweep from Python, no flags: expand the grid, choose learning rates, run, score evaluations.

  from research.sweeps import engine
  result = engine.run_sweep("configs/sweeps/smoke.py", runs_dir="runs/smoke", executor="inline")
  result.rows  # one dict per run and per test-time evaluation

What to run comes from grid (the sweep file's grid x seeds, one workdir per run under runs_dir),
how to run it from executors (a local Ray instance started here, an existing cluster at
`ray_address`, or this process with executor="inline"), what was run from records (finished runs
missing from runs_dir are restored from the records file instead of trained again). The command
line (`python -m research.sweeps`, research/sweeps/cli.py) maps its flags onto these arguments.
"""
import contextlib
import dataclasses
import os
from typing import Callable

from research import UserError
from research.sweeps import evals, executors, grid, lr_search, records, report


class RunsFailed(Exception):
  """Some runs failed by their own error; the others finished and the table of what there is
  was written. The message names every failed run and its error line."""


# The sweep's Ray node was lost (a cluster's at once, the local one after `ray_restarts`
# restarts): Ray's failure, not the runs'; the message names it and the runs it interrupted.
RayNodeLost = executors.RayNodeLost


@dataclasses.dataclass
class Runner:
  """Where a sweep's runs live and how they run; `create` fills in the defaults.

  runs_dir: the run workdirs (sweeps that share it share identical runs); output_dir: the
  results (each defaults from the other). executor: "ray" (each run a Ray task in its own
  worker) or "inline" (one after another in this process). ray_address: join this cluster
  ("auto", "HOST:PORT", "ray://HOST:10001") instead of starting a local one. num_cpus, num_gpus:
  per run (default: the sweep file's `resources`, else chosen from the cluster). max_retries: Ray
  retries of a run whose worker died. ray_restarts: restarts of the local Ray instance when its
  node dies (one of Ray's own processes killed); the interrupted runs resume. compilation_cache:
  "auto" (a directory in each machine's temp dir), a path, or "" (none). records: the run
  records file ("auto": OUTPUT_DIR/runs.jsonl; "": none).

  `connected(spec)` holds one Ray connection for everything run inside it (run_sweep's search,
  runs and evaluations); outside it each batch connects and disconnects on its own.
  """
  runs_dir: str
  output_dir: str
  executor: str = "ray"
  ray_address: str = ""
  num_cpus: float | None = None
  num_gpus: float | None = None
  max_retries: int = 3
  ray_restarts: int = 2
  compilation_cache: str = "auto"
  records: str = "auto"
  log: Callable = print
  _ray: executors.RayExecutor | None = dataclasses.field(default=None, init=False, repr=False)

  @classmethod
  def create(cls, runs_dir: str = "", output_dir: str = "", **options) -> "Runner":
    if not (runs_dir or output_dir):
      raise UserError("give --runs_dir (run workdirs) or --output_dir (the results table)")
    if options.get("executor", "ray") not in ("ray", "inline"):
      raise UserError(f"executor {options['executor']!r}: choose ray or inline")
    output_dir = output_dir or runs_dir
    runs_dir = runs_dir or os.path.join(output_dir, "runs")
    return cls(os.path.abspath(runs_dir), output_dir, **options)

  @property
  def records_file(self) -> str:
    return os.path.join(self.output_dir, "runs.jsonl") if self.records == "auto" else self.records

  def ray_options(self, spec: dict) -> dict:
    """Per-run resources and the cluster address: the arguments first, then the sweep file's."""
    wanted = dict(spec.get("resources", {}))
    if self.num_cpus is not None:
      wanted["num_cpus"] = self.num_cpus
    if self.num_gpus is not None:
      wanted["num_gpus"] = self.num_gpus
    unknown = set(wanted) - {"num_cpus", "num_gpus", "resources"}
    if unknown:
      raise UserError(f"sweep file resources: unknown keys {sorted(unknown)} (num_cpus, "
                      "num_gpus, resources)")
    return {"address": self.ray_address, "max_retries": self.max_retries,
            "restarts": self.ray_restarts, **wanted}

  @contextlib.contextmanager
  def connected(self, spec: dict):
    """One Ray executor (connected on the first run it trains) for everything inside."""
    if self.executor != "ray" or self._ray is not None:
      yield
      return
    with executors.RayExecutor(log=self.log, **self.ray_options(spec)) as ray_executor:
      self._ray = ray_executor
      try:
        yield
      finally:
        self._ray = None

  def executor_for(self, spec: dict, seen: list):
    """execute(runs) -> {name: outcome}: runs missing from runs_dir are first restored from the
    records file, and the finished ones are added to it after each batch; `seen` collects every
    run executed (for the final save, after the evaluations)."""
    options = self.ray_options(spec) if self.executor == "ray" else {}
    cache = None if self.compilation_cache == "auto" else self.compilation_cache
    path = self.records_file

    def execute(runs):
      restored = records.restore(path, self.runs_dir, [r.name for r in runs])
      if restored:
        self.log(f"  {len(restored)} finished runs restored from {path}")
      seen.extend(r.name for r in runs)
      try:
        if self._ray is not None:
          return executors.run_runs(runs, self.runs_dir, self.executor, log=self.log,
                                    compilation_cache=cache, ray_executor=self._ray)
        return executors.run_runs(runs, self.runs_dir, self.executor, log=self.log,
                                  compilation_cache=cache, **options)
      finally:  # what finished is kept even when the sweep stops here (Ctrl-C, a failure)
        if path:
          records.save(path, self.runs_dir, [r.name for r in runs])

    return execute

  def save_records(self, names) -> None:
    if self.records_file:
      n = records.save(self.records_file, self.runs_dir, names)
      self.log(f"run records: {n} runs in {self.records_file}")

  def evaluate(self, spec: dict, runs: list, rows: list[dict]) -> list[dict]:
    """The spec's test-time evaluations: scored in the Ray workers when this runner's connection
    is connected (they hold the imports, data and compiled programs), else here."""
    if self._ray is not None:
      jobs = evals.pending(spec, runs, rows, self.runs_dir)
      for name, error in self._ray.evaluate(jobs, self.runs_dir).items():
        if error != "not connected":
          self.log(f"  evaluations of {name} in a Ray worker: {error}; scoring them here")
    return evals.run_evals(spec, runs, rows, self.runs_dir, log=self.log)

  def run(self, study: str, spec: dict, runs: list) -> list[dict]:
    """Runs (or reads back) `runs` built from finished runs (a second stage, e.g. runs that
    start from other runs' checkpoints); rows as run_sweep's."""
    self.log(f"{study}: {len(runs)} runs in {self.runs_dir} ({self.executor})")
    seen = []
    with self.connected(spec):
      outcomes = self.executor_for(spec, seen)(runs)
    self.save_records(seen)
    return result_rows(study, runs, outcomes, self.runs_dir)


@dataclasses.dataclass
class SweepResult:
  """A sweep that ran: its spec (with `lr_search_rows` after a search), runs and rows (one per
  run and per evaluation; a failed run's row has status 'failed' and its error line)."""
  name: str
  spec: dict
  runs: list
  rows: list[dict]
  runner: Runner

  @property
  def runs_dir(self) -> str:
    return self.runner.runs_dir

  @property
  def output_dir(self) -> str:
    return self.runner.output_dir


def sweep_name(sweep: str) -> str:
  """configs/sweeps/shuffled.py:quick -> 'shuffled'."""
  return grid.slug(os.path.splitext(os.path.basename(sweep.partition(":")[0]))[0])


def run_sweep(sweep, *, name: str | None = None, overrides: dict | None = None,
              seeds: list[int] | None = None, runs_dir: str = "", output_dir: str = "",
              **options) -> SweepResult:
  """Runs a sweep: `sweep` is a sweep file (`path.py[:arg]`) or the dict its get_sweep returns.

  Expands it (with `overrides` for every run and `seeds` instead of the file's), chooses learning
  rates on the validation split when the file has `lr_search` (unless `overrides` sets one), runs
  or reads back every run, and scores the file's `evals`. `options` are Runner's (executor,
  ray_address, num_cpus, num_gpus, max_retries, ray_restarts, compilation_cache, records, log).
  Failed runs are rows with status 'failed'; `stop_on_failures` turns them into an error. A lost
  Ray node that cannot be restarted raises RayNodeLost (the finished runs are recorded first).
  """
  runner = Runner.create(runs_dir, output_dir, **options)
  if isinstance(sweep, dict):
    spec, name = sweep, name or "sweep"
  elif sweep:
    spec, name = grid.load_sweep(sweep), name or sweep_name(sweep)
  else:
    raise UserError("give --sweep=configs/sweeps/FILE.py[:arg]")
  overrides = dict(overrides or {})
  grid.check_set_overrides(grid.expand(spec, overrides, seeds), overrides)
  os.makedirs(runner.output_dir, exist_ok=True)
  seen = []
  execute = runner.executor_for(spec, seen)
  with runner.connected(spec):  # one Ray instance (and its warm workers) for every stage
    if spec.get("lr_search") and "learning_rate" not in overrides:
      spec = lr_search.choose_learning_rates(spec, overrides, execute, log=runner.log,
                                             study=name)
    runs = grid.expand(spec, overrides, seeds)
    runner.log(f"{name}: {len(runs)} runs in {runner.runs_dir} ({runner.executor})")
    rows = result_rows(name, runs, execute(runs), runner.runs_dir)
    rows += runner.evaluate(spec, runs, rows)
  runner.save_records(seen)
  return SweepResult(name, spec, runs, rows, runner)


def result_rows(study: str, runs: list, outcomes: dict, runs_dir: str) -> list[dict]:
  return [report.result_row(study, run, outcomes[run.name]["results"],
                            os.path.join(runs_dir, run.name), status=outcomes[run.name]["status"],
                            error=outcomes[run.name].get("error", ""),
                            run_seconds=outcomes[run.name].get("seconds")) for run in runs]


def stop_on_failures(rows: list[dict], output_dir: str, study: str) -> None:
  """Writes the table of what there is and raises RunsFailed when runs failed."""
  bad = report.failed(rows)
  if not bad:
    return
  report.write_outputs(output_dir, rows, report.sweep_markdown(rows, study))
  lines = [f"{len(bad)} of {sum(r.get('status') != 'eval' for r in rows)} runs failed (table in "
           f"{output_dir}/results.csv; fix and rerun the same command: finished runs are read "
           "back):"]
  lines += [f"  {os.path.basename(r['workdir'])}: {r['error']}" for r in bad]
  raise RunsFailed("\n".join(lines))


def report_sweep(result: SweepResult, results_md: str = "") -> str:
  """The generic report of any sweep: results.csv and results.md (mean ± std over seeds) in the
  output dir, its section of `results_md` (when given). Returns the markdown."""
  stop_on_failures(result.rows, result.output_dir, result.name)
  markdown = report.sweep_markdown(result.rows, result.name)
  report.write_outputs(result.output_dir, result.rows, markdown)
  if results_md:
    report.update_markdown_section(results_md, result.name, markdown, asset_dir=result.output_dir)
  return markdown
