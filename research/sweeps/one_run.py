"""One run of a sweep: trained in this process, resumed from its checkpoints, or read back.

Every run is `train.train_and_evaluate(run.config(), RUNS_DIR/run.name)`, whichever executor
runs it. A finished run (results.json) is read back without training; an error of the run itself
is returned as "failed" with its one error line, never raised (retrying would fail the same way).
"""
import json
import os
import socket
import tempfile
import time


def error_line(e: BaseException) -> str:
  """`Type: message` on one line, at most 400 characters."""
  text = " ".join(str(e).split())
  return f"{type(e).__name__}: {text}"[:400] if text else type(e).__name__


def run_one(run, runs_dir: str) -> dict:
  """Trains `run` in this process, or reads it back when finished.

  Returns {"status": "done" | "trained" | "resumed" | "failed", "results", "error", "seconds",
  "host", "pid"}. An exception of the run itself is returned as "failed", not raised.
  """
  workdir = os.path.join(runs_dir, run.name)
  out = {"results": {}, "error": "", "host": socket.gethostname(), "pid": os.getpid()}
  t0 = time.time()
  results_path = os.path.join(workdir, "results.json")
  if os.path.exists(results_path):
    with open(results_path) as f:
      return {**out, "status": "done", "results": json.load(f), "seconds": 0.0}
  status = "resumed" if os.path.isdir(os.path.join(workdir, "checkpoints")) else "trained"
  try:
    config = run.config()
    from research import train  # heavy: jax
    results = train.train_and_evaluate(config, workdir)
  except Exception as e:  # the run's own error: retrying would fail the same way
    return {**out, "status": "failed", "error": error_line(e), "seconds": time.time() - t0}
  return {**out, "status": status, "results": results, "seconds": time.time() - t0}


def default_compilation_cache() -> str:
  """A machine-local directory for JAX's persistent compilation cache."""
  return os.path.join(tempfile.gettempdir(), f"dvc-jax-cache-{os.getuid()}")


def use_compilation_cache(path: str) -> None:
  """Points this process's JAX at a persistent compilation cache in `path` ("" leaves it off).

  Runs of a sweep that share a model and batch shape compile the same programs; from the cache
  the second one loads them instead. The executable is the one a compile produces, so the
  numbers are the same.
  """
  if not path:
    return
  import jax
  if jax.config.jax_compilation_cache_dir != path:
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
