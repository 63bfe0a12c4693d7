"""How a sweep's runs are run: as Ray tasks (the default) or one after another in this process.

With Ray each run (research/sweeps/one_run.py) is a task in a worker process of its own:

* a worker that dies (SIGKILL, a lost node, the project's SIGTERM save and exit 143) is retried
  by Ray up to `max_retries` times and the run resumes from its newest checkpoint;
* an error of the run itself (a bad override, a NaN loss) is caught in the task and returned:
  Ray does not retry it, the run is reported failed with its one error line, the others go on;
* the task writes its log to WORKDIR/train.log (logs.py; each attempt starts with a header line
  naming its host and pid);
* CPU workers are reused across runs (imports and datasets stay loaded); a GPU or TPU run gets
  a fresh worker, since a JAX process keeps the devices it started on;
* where several runs share a CPU machine, each run pins its worker to cores no other run holds
  (pinning.py).
"""
import os
import socket
import time

from research.sweeps.logs import log_to
from research.sweeps.one_run import (default_compilation_cache, error_line, run_one,
                                     use_compilation_cache)
from research.sweeps.pinning import cpu_slot
from research.sweeps.progress import Progress


def remote_run(run, runs_dir: str, pin_cpus: int, compilation_cache: str = "") -> dict:
  """The Ray task: `run_one` with the worker pinned where runs share a CPU machine, and the run's
  output in WORKDIR/train.log."""
  import ray
  node = ray.get_runtime_context().get_node_id()
  workdir = os.path.join(runs_dir, run.name)
  os.makedirs(workdir, exist_ok=True)
  with cpu_slot(pin_cpus) as cores, log_to(os.path.join(workdir, "train.log")) as log:
    log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {run.name}: pid {os.getpid()} on "
              f"{socket.gethostname()}, ray node {node}, cores {cores if cores else 'all'}\n")
    use_compilation_cache(compilation_cache)
    outcome = run_one(run, runs_dir)
    if outcome["status"] == "failed":
      log.write(f"error: {outcome['error']}\n")
  return {**outcome, "node": node, "cores": cores}


def run_inline(runs, runs_dir: str, progress: Progress, outcomes: dict,
               compilation_cache: str = "") -> None:
  """For debugging and notebooks: one run after another in this process."""
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
  are TPUs, else all the CPUs of the largest node (one run at a time per CPU machine: XLA already
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
                       "error": error_line(e).splitlines()[0]}
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
