"""One run of a sweep: trained in this process, resumed from its checkpoints, or read back.

Every run is `train.train_and_evaluate(run.config(), RUNS_DIR/run.name)`, whichever executor
runs it. A finished run (results.json) is read back without training; an error of the run itself
is returned as "failed" with its one error line, never raised (retrying would fail the same way).

A process runs many runs one after another (inline, or a reused Ray worker): what a run changes
in the process's global state (JAX's config flags, NumPy's global generator, environment
variables) is put back when it ends, so no run sees another's settings. JAX's caches of traced
and compiled programs are kept: they are keyed on what the programs are, not on whose run.
"""
import contextlib
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
    with isolated(), CacheCounter() as cache:
      results = train.train_and_evaluate(config, workdir)
  except Exception as e:  # the run's own error: retrying would fail the same way
    return {**out, "status": "failed", "error": error_line(e), "seconds": time.time() - t0}
  return {**out, "status": status, "results": results, "seconds": time.time() - t0,
          "compiles": cache.requests, "cache_hits": cache.hits}


@contextlib.contextmanager
def isolated():
  """Puts back what the body changes in this process's global state: JAX's config values (e.g.
  a run's `debug` turns on jax_debug_nans), NumPy's global generator, the environment."""
  import jax
  import numpy as np
  flags, rng, environ = dict(jax.config.values), np.random.get_state(), dict(os.environ)
  try:
    yield
  finally:
    for name, value in flags.items():
      if jax.config.values.get(name, value) != value:
        try:
          jax.config.update(name, value)
        except Exception:  # a flag that cannot change once the backend is up: never a run's
          pass
    np.random.set_state(rng)
    for name in set(os.environ) - set(environ):
      del os.environ[name]
    for name, value in environ.items():
      if os.environ.get(name) != value:
        os.environ[name] = value


class CacheCounter:
  """Counts this process's compilations that asked JAX's persistent compilation cache, and its
  hits, while the body runs: a run whose programs all came from the cache has hits == compiles."""

  _EVENTS = {"/jax/compilation_cache/compile_requests_use_cache": "requests",
             "/jax/compilation_cache/cache_hits": "hits"}

  def __init__(self):
    self.requests = self.hits = 0

  def _event(self, event, **kwargs):
    if event in self._EVENTS:
      setattr(self, self._EVENTS[event], getattr(self, self._EVENTS[event]) + 1)

  def __enter__(self):
    from jax import monitoring
    monitoring.register_event_listener(self._event)
    return self

  def __exit__(self, *exc):
    from jax import monitoring
    monitoring.unregister_event_listener(self._event)


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
