"""How a sweep's runs are run: as Ray tasks (the default) or one after another in this process.

Every run is `train.train_and_evaluate(run.config(), RUNS_DIR/run.name)`, whatever runs it: a
finished run (results.json) is read back without training, an unfinished one resumes from its
checkpoints. With Ray each run is a task in a worker process of its own:

* a worker that dies (SIGKILL, a lost node, the project's SIGTERM save and exit 143) is retried
  by Ray up to `max_retries` times and the run resumes from its newest checkpoint;
* an error of the run itself (a bad override, a NaN loss) is caught in the task and returned:
  Ray does not retry it, the run is reported failed with its one error line, the others go on;
* the task writes its log to WORKDIR/train.log (each attempt starts with a header line naming
  its host and pid);
* CPU workers are reused across runs (imports and datasets stay loaded); a GPU or TPU run gets
  a fresh worker, since a JAX process keeps the devices it started on;
* where several runs share a CPU box (a run asks for fewer CPUs than the box has), each run
  pins its worker to cores no other run holds (before JAX is imported in a fresh worker): the
  XLA thread flags do not bound XLA:CPU's threads, the affinity does.
"""
import contextlib
import json
import os
import socket
import sys
import tempfile
import time

from research import cli



def _error_line(e: BaseException) -> str:
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
    return {**out, "status": "failed", "error": _error_line(e), "seconds": time.time() - t0}
  return {**out, "status": status, "results": results, "seconds": time.time() - t0}


def default_compilation_cache() -> str:
  """A machine-local directory for JAX's persistent compilation cache."""
  return os.path.join(tempfile.gettempdir(), f"dvc-jax-cache-{os.getuid()}")


def use_compilation_cache(path: str) -> None:
  """Points this process's JAX at a persistent compilation cache in `path` ("" leaves it off).

  Every run of a sweep that shares a model and batch shape compiles the same programs; from the
  cache the second one loads them instead (a 20-step MLP run: 14-23 s -> 2-5 s on this loaded
  box). The executable is the one a compile produces, so the numbers are the same.
  """
  if not path:
    return
  import jax
  if jax.config.jax_compilation_cache_dir != path:
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# --- inside a Ray worker ----------------------------------------------------------------------

_ALL_CPUS = None  # the worker's CPUs before any pinning


def _pin(cpus) -> None:
  """Sets the affinity of every thread of this process (XLA's pool threads included)."""
  for tid in os.listdir("/proc/self/task"):
    try:
      os.sched_setaffinity(int(tid), cpus)
    except OSError:  # a thread that just ended
      pass


@contextlib.contextmanager
def _cpu_slot(num_cpus: int, wait_s: float = 120.0):
  """Pins this worker to `num_cpus` cores that no other run on this machine holds, while the
  run lasts (a lock file per slot), when runs share the machine; otherwise changes nothing."""
  global _ALL_CPUS
  if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
    yield None
    return
  if _ALL_CPUS is None:
    _ALL_CPUS = sorted(os.sched_getaffinity(0))
  k = int(num_cpus)
  if k <= 0 or k >= len(_ALL_CPUS):
    yield None
    return
  import fcntl
  lock_dir = os.path.join(tempfile.gettempdir(), f"dvc-cpu-slots-{os.getuid()}")
  os.makedirs(lock_dir, exist_ok=True)
  n_slots = len(_ALL_CPUS) // k
  deadline = time.time() + wait_s
  while True:
    for i in range(n_slots):
      handle = open(os.path.join(lock_dir, f"slot{i}-of-{n_slots}.lock"), "w")
      try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        handle.close()
        continue
      cores = _ALL_CPUS[i * k:(i + 1) * k]
      _pin(cores)
      try:
        yield cores
      finally:
        handle.close()  # releases the lock
      return
    if time.time() > deadline:  # more runs than slots on this machine: run unpinned
      print(f"warning: no free CPU slot of {k} cores after {wait_s:.0f}s; running unpinned",
            file=sys.stderr)
      yield None
      return
    time.sleep(0.5)


@contextlib.contextmanager
def _log_to(path: str):
  """Sends this process's stdout, stderr and absl log to `path` (appended) while it lasts."""
  import logging as pylogging
  from absl import logging
  sys.stdout.flush()
  sys.stderr.flush()
  log_file = open(path, "a", buffering=1)
  saved = os.dup(1), os.dup(2)
  os.dup2(log_file.fileno(), 1)
  os.dup2(log_file.fileno(), 2)
  handler = pylogging.StreamHandler(log_file)
  handler.setFormatter(pylogging.Formatter(
      "%(levelname).1s%(asctime)s %(filename)s:%(lineno)d] %(message)s", "%m%d %H:%M:%S"))
  handler.addFilter(cli.QuietLibraries())
  absl_logger = logging.get_absl_logger()
  level, propagate = absl_logger.level, absl_logger.propagate
  absl_logger.addHandler(handler)
  absl_logger.setLevel(pylogging.INFO)
  absl_logger.propagate = False
  try:
    yield log_file
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    absl_logger.removeHandler(handler)
    absl_logger.setLevel(level)
    absl_logger.propagate = propagate
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    os.close(saved[0])
    os.close(saved[1])
    log_file.close()


def remote_run(run, runs_dir: str, pin_cpus: int, compilation_cache: str = "") -> dict:
  """The Ray task: `run_one` with the worker pinned where runs share a CPU box, and the run's
  output in WORKDIR/train.log."""
  import ray
  node = ray.get_runtime_context().get_node_id()
  workdir = os.path.join(runs_dir, run.name)
  os.makedirs(workdir, exist_ok=True)
  with _cpu_slot(pin_cpus) as cores, _log_to(os.path.join(workdir, "train.log")) as log:
    log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {run.name}: pid {os.getpid()} on "
              f"{socket.gethostname()}, ray node {node}, cores {cores if cores else 'all'}\n")
    use_compilation_cache(compilation_cache)
    outcome = run_one(run, runs_dir)
    if outcome["status"] == "failed":
      log.write(f"error: {outcome['error']}\n")
  return {**outcome, "node": node, "cores": cores}


# --- in the driver ----------------------------------------------------------------------------


class Progress:
  """One line per finished run, and a live status line (done / running / failed / pending, ETA):
  redrawn in place on a terminal, printed every `every_s` seconds otherwise."""

  def __init__(self, total: int, log=print, stream=None, every_s: float = 60.0):
    self.total, self.log = total, log
    self.stream = stream if stream is not None else sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.every_s = every_s
    self.done = self.failed = self.running = 0
    self.pending = total
    self.slots = 1
    self.durations = []
    self._drawn = False
    self._last = time.time()

  def status(self) -> str:
    eta = "?"
    if self.durations and (self.running or self.pending):
      mean = sum(self.durations) / len(self.durations)
      eta = _duration(mean * (self.running + self.pending) / max(self.slots, 1))
    elif not (self.running or self.pending):
      eta = "0s"
    return (f"runs: {self.done} done, {self.running} running, {self.failed} failed, "
            f"{self.pending} pending of {self.total}; ETA {eta}")

  def _clear(self):
    if self.tty and self._drawn:
      self.stream.write("\r\033[K")
      self.stream.flush()
      self._drawn = False

  def _draw(self):
    if self.tty:
      self.stream.write("\r\033[K" + self.status())
      self.stream.flush()
      self._drawn = True
    elif time.time() - self._last >= self.every_s:
      self.log(self.status())
      self._last = time.time()

  def update(self, running: int, pending: int, slots: int | None = None) -> None:
    self.running, self.pending = running, pending
    self.slots = slots or self.slots
    self._draw()

  def finished(self, run, outcome: dict) -> None:
    if outcome["status"] == "failed":
      self.failed += 1
    else:
      self.done += 1
    if outcome["status"] in ("trained", "resumed"):
      self.durations.append(outcome.get("seconds") or 0.0)
    r = outcome.get("results") or {}
    if outcome["status"] == "failed":
      detail = f"error: {outcome.get('error')}"
    else:
      detail = f"test {r.get('test_accuracy', float('nan')):.4f}"
      if r.get("train_accuracy") is not None:
        detail += f" train {r['train_accuracy']:.4f}"
      detail += f"  {r.get('steps')} steps  {outcome.get('seconds') or 0.0:.0f}s"
    self._clear()
    self.log(f"[{self.done + self.failed}/{self.total}] {run.model:4s} {run.condition:22s} seed "
             f"{run.seed}: {outcome['status']:7s} {detail}  {run.name}")
    self._draw()

  def close(self) -> None:
    self._clear()
    self.log(self.status())


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 120:
    return f"{seconds}s"
  if seconds < 7200:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def run_inline(runs, runs_dir: str, progress: Progress, outcomes: dict,
               compilation_cache: str = "") -> None:
  """Today's behaviour, for debugging: one run after another in this process."""
  use_compilation_cache(compilation_cache)
  for i, run in enumerate(runs):
    progress.update(running=1, pending=len(runs) - i - 1)
    outcomes[run.name] = run_one(run, runs_dir)
    progress.finished(run, outcomes[run.name])
  progress.update(running=0, pending=0)


class RayExecutor:
  """Runs a sweep's runs as Ray tasks on a local Ray instance it starts (address "") or on the
  cluster at `address` ("auto", "HOST:PORT", "ray://HOST:10001").

  Per-run resources: `num_cpus`, `num_gpus` and `resources` ({"TPU": 4}); those left None are
  chosen from the cluster: one GPU per run where there are GPUs, a host's TPU chips where there
  are TPUs, else all the CPUs of the largest node (one run at a time per CPU box: XLA already
  uses every core).
  """

  def __init__(self, address: str = "", num_cpus: float | None = None,
               num_gpus: float | None = None, resources: dict | None = None,
               max_retries: int = 3, object_store_mb: int = 256, log=print):
    self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
    self.resources = dict(resources or {})
    self.max_retries, self.object_store_mb, self.log = max_retries, object_store_mb, log
    self._connected = False
    self.start_seconds = 0.0

  def __enter__(self):
    import logging

    import ray
    t0 = time.time()
    if ray.is_initialized():  # a notebook or a test already holds a connection: use it
      pass
    elif self.address:
      from research import UserError
      _check_reachable(self.address)
      try:
        ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
      except (ConnectionError, RuntimeError, ValueError) as e:
        reason = " ".join(str(e).split())[:300]
        raise UserError(f"cannot join the Ray cluster at {self.address}: {reason}") from None
      self._connected = True
    else:
      cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
      ray.init(address="local", num_cpus=cpus, include_dashboard=False,
               object_store_memory=self.object_store_mb * 2**20, log_to_driver=False,
               logging_level=logging.WARNING)
      self._connected = True
    self.start_seconds = time.time() - t0
    return self

  def __exit__(self, *exc):
    import ray
    if self._connected:
      ray.shutdown()  # a local instance stops with it; a cluster just loses this driver

  def _nodes(self):
    import ray
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]

  def task_options(self) -> dict:
    """Ray options of one run, defaults filled in from the cluster's nodes."""
    from research import UserError
    nodes = self._nodes()
    max_cpu = max((n.get("CPU", 0) for n in nodes), default=0)
    has_gpu = any(n.get("GPU", 0) for n in nodes)
    tpu_chips = max((n.get("TPU", 0) for n in nodes), default=0)
    resources = dict(self.resources)
    if tpu_chips and "TPU" not in resources and not self.num_gpus:
      resources["TPU"] = tpu_chips  # the whole host's chips (a single-host slice)
    num_gpus = self.num_gpus if self.num_gpus is not None else (
        1 if has_gpu and not resources.get("TPU") else 0)
    accel = num_gpus > 0 or bool(resources.get("TPU"))
    num_cpus = self.num_cpus if self.num_cpus is not None else (1 if accel else max_cpu)
    if num_cpus > max_cpu:
      raise UserError(f"a run asks for {num_cpus:g} CPUs but the largest Ray node has "
                      f"{max_cpu:g}")
    wanted = {"GPU": num_gpus, **resources}
    for name, amount in wanted.items():  # else Ray would wait for such a node forever
      most = max((n.get(name, 0) for n in nodes), default=0)
      if amount and amount > most:
        raise UserError(f"a run asks for {amount:g} {name} but no Ray node has that many "
                        f"(most: {most:g}); set --num_gpus=0 or the sweep file's resources")
    return {"num_cpus": num_cpus, "num_gpus": num_gpus, "resources": resources,
            "max_retries": self.max_retries, "retry_exceptions": False,
            # A JAX process keeps the devices it started on: fresh workers for accelerators.
            "max_calls": 1 if accel else 0}

  def slots(self, options: dict) -> int:
    """How many runs fit on the cluster at once."""
    total = 0
    for node in self._nodes():
      fits = [node.get("CPU", 0) / options["num_cpus"]] if options["num_cpus"] else []
      if options["num_gpus"]:
        fits.append(node.get("GPU", 0) / options["num_gpus"])
      for name, amount in options["resources"].items():
        fits.append(node.get(name, 0) / amount)
      total += int(min(fits)) if fits else 1
    return max(total, 1)

  def run(self, runs, runs_dir: str, progress: Progress, outcomes: dict,
          compilation_cache: str = "") -> None:
    """Submits the runs (as many at once as fit), records each outcome as it arrives."""
    import ray
    options = self.task_options()
    pin = int(options["num_cpus"]) if not (options["num_gpus"] or options["resources"]) else 0
    options = dict(options)
    task = ray.remote(max_calls=options.pop("max_calls"))(remote_run).options(**options)
    pending, inflight = list(runs), {}
    slots, checked = self.slots(options), time.time()
    self.log(f"ray: {len(self._nodes())} node(s) (connected in {self.start_seconds:.1f}s), "
             f"{slots} run(s) at a time, per run "
             f"{options['num_cpus']:g} CPU, {options['num_gpus']:g} GPU"
             + (f", {options['resources']}" if options["resources"] else ""))
    try:
      while pending or inflight:
        if time.time() - checked > 10:  # nodes may join or leave
          slots, checked = self.slots(options), time.time()
        while pending and len(inflight) < slots:
          run = pending.pop(0)
          inflight[task.remote(run, runs_dir, pin, compilation_cache)] = run
        progress.update(running=len(inflight), pending=len(pending), slots=slots)
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
        for ref in ready:
          run = inflight.pop(ref)
          try:
            outcome = ray.get(ref)
          except ray.exceptions.RayError as e:  # the worker died more than max_retries times
            outcome = {"status": "failed", "results": {}, "seconds": 0.0,
                       "error": _error_line(e).splitlines()[0]}
          outcomes[run.name] = outcome
          progress.finished(run, outcome)
      progress.update(running=0, pending=0)
    except KeyboardInterrupt:
      for ref in inflight:
        ray.cancel(ref, force=True)  # checkpoints are committed atomically: they stay intact
      raise


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
  """A HOST:PORT (or ray://HOST:PORT) nobody listens on: one error line now, not ray.init's
  minutes of retries."""
  from research import UserError
  hostport = address.split("://", 1)[-1]
  host, _, port = hostport.rpartition(":")
  if address == "auto" or not host or not port.isdigit():
    return
  try:
    socket.create_connection((host, int(port)), timeout=timeout_s).close()
  except OSError as e:
    raise UserError(f"cannot join the Ray cluster at {address}: nothing answers there "
                    f"({e.strerror or e}); start one with `ray start --head` or check "
                    "--ray_address") from None


def run_runs(runs, runs_dir: str, executor: str = "ray", log=print, progress=None,
             compilation_cache: str | None = None, **ray_options) -> dict:
  """Runs (or reads back) every run; returns {run.name: outcome} (see `run_one`).

  `compilation_cache`: JAX's persistent compilation cache for the runs (None: a directory
  local to each machine, "": none).
  """
  if compilation_cache is None:
    compilation_cache = default_compilation_cache()
  os.makedirs(runs_dir, exist_ok=True)
  progress = progress or Progress(len(runs), log)
  outcomes, todo = {}, []
  for run in runs:
    results_path = os.path.join(runs_dir, run.name, "results.json")
    if os.path.exists(results_path):  # finished: read back here, no worker needed
      outcomes[run.name] = run_one(run, runs_dir)
      progress.finished(run, outcomes[run.name])
    else:
      todo.append(run)
  progress.update(running=0, pending=len(todo))
  if todo and executor == "inline":
    run_inline(todo, runs_dir, progress, outcomes, compilation_cache)
  elif todo:
    with RayExecutor(log=log, **ray_options) as ray_executor:
      ray_executor.run(todo, runs_dir, progress, outcomes, compilation_cache)
  progress.close()
  return outcomes
