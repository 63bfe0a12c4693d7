"""Runs any sweep file on Ray (or inline) and writes its results table.

  python -m research.sweeps --sweep=configs/sweeps/shuffled.py:quick --runs_dir=runs/sweeps \
      [--output_dir=DIR] [--set key=value ...] [--seeds=0,1,2] [--executor=ray|inline] \
      [--ray_address=auto|HOST:PORT|ray://HOST:10001] [--num_cpus=N] [--num_gpus=N]

The flags map one to one onto engine.run_sweep's arguments (the library takes arguments, this
module holds the flags). Writes OUTPUT_DIR/results.csv (one row per run and per test-time
evaluation; failed runs with their error line) and results.md (mean ± std over seeds).

Exit status: 0 when every run finished; 1 when some failed (the others finish first; a summary
names them); 2 for bad input; 3 when the Ray node was lost (a cluster's node, or the local
instance after --ray_restarts restarts: Ray's failure, named with the runs it interrupted; rerun
the same command to resume); 130 on Ctrl-C (rerun the same command to resume). The studies
(`python -m research.studies NAME`) take the same flags and add their analysis and plots.
"""
import os
import sys

from absl import app, flags

from research import UserError, cli
from research.sweeps import engine, grid

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
flags.DEFINE_integer("ray_restarts", 2, "Restarts of the local Ray instance when its node dies "
                     "(the raylet or one of its agents killed); the interrupted runs resume from "
                     "their checkpoints. On a cluster (--ray_address) a lost node stops the sweep "
                     "(exit 3).")
flags.DEFINE_string("compilation_cache", "auto", "JAX's persistent compilation cache for the "
                    "runs: auto (a directory in each machine's temp dir), a path, or '' (none).")
flags.DEFINE_string("results_md", "", "Also write the table into this markdown file's section "
                    "for the study.")
flags.DEFINE_string("records", "auto", "Run records (research/sweeps/records.py): finished runs "
                    "missing from --runs_dir are restored from this file instead of trained "
                    "again, and every finished run is added to it. auto: OUTPUT_DIR/runs.jsonl; "
                    "'': none.")

# The flags that are run_sweep's arguments (sweep, set and seeds are parsed first).
SWEEP_FLAGS = ("runs_dir", "output_dir", "executor", "ray_address", "num_cpus", "num_gpus",
               "max_retries", "ray_restarts", "compilation_cache", "records")


def sweep_arguments() -> dict:
  """The sweep flags as run_sweep's keyword arguments."""
  return {"sweep": FLAGS.sweep, "overrides": grid.parse_set(FLAGS.set),
          "seeds": grid.parse_seeds(FLAGS.seeds), **{k: FLAGS[k].value for k in SWEEP_FLAGS}}


def parse(argv: list[str]) -> list[str]:
  """absl parsing of `argv` (program name first); a bad flag is one error line and exit 2."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    print(f"error: {lines[0] if lines else e}", file=sys.stderr)
    sys.exit(2)


def parse_again(argv: list[str]) -> None:
  """Parses `argv` (no program name) into FLAGS afresh: main(argv) called from Python."""
  FLAGS.unparse_flags()
  parse([sys.argv[0]] + list(argv))


def guarded(body):
  """Runs `body()` with the command line's exits: bad input -> one error line and status 2,
  failed runs -> their summary and status 1, a lost Ray node -> its line and status 3, Ctrl-C ->
  status 130 with how to resume."""
  try:
    return body()
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except engine.RunsFailed as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except engine.RayNodeLost as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(3)
  except KeyboardInterrupt:
    print("\ninterrupted: workers stopped, checkpoints kept; rerun the same command to resume",
          file=sys.stderr)
    sys.exit(130)


def run_app(body, argv: list[str] | None = None) -> None:
  """A `__main__`: absl parsing of `argv` (default sys.argv), a quiet log, then guarded(body);
  exit status 0 when it returns."""

  def main_(argv):
    from absl import logging
    logging.get_absl_handler().addFilter(cli.QuietLibraries())  # inline runs log here
    if len(argv) > 1:
      print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
      sys.exit(2)
    guarded(body)

  app.run(main_, argv=argv, flags_parser=parse)


def _sweep():
  result = engine.run_sweep(**sweep_arguments())
  print(engine.report_sweep(result, FLAGS.results_md))
  where = os.path.join(result.output_dir, "results")
  print(f"wrote {where}.csv and {where}.md" + (f", and its section of {FLAGS.results_md}"
                                                if FLAGS.results_md else ""), flush=True)
  return result.rows


def main(argv=None):
  """`python -m research.sweeps FLAGS`; from Python, main(["--sweep=...", ...]) (a notebook
  calls engine.run_sweep instead)."""
  if argv is not None:
    parse_again(argv)
    return guarded(_sweep)
  run_app(_sweep)


if __name__ == "__main__":
  main()
