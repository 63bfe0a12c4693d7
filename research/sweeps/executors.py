"""How a sweep's runs are run: as Ray tasks (the default) or one after another in this process.

With Ray each run (research/sweeps/one_run.py) is a task in a worker process:

* CPU workers are reused across runs and across a sweep's stages (its learning-rate search, its
  runs, its evaluations: one Ray instance serves the whole sweep), so imports, datasets and
  compiled programs stay loaded; what a run changes in the process's global state is put back
  when it ends (one_run.isolated). A GPU or TPU run gets a fresh worker, since a JAX process
  keeps the devices it started on;
* a worker that dies (SIGKILL, the project's SIGTERM save and exit 143) is retried by Ray up to
  `max_retries` times and the run resumes from its newest checkpoint;
* a lost node (one of Ray's own processes killed: the raylet, an agent) is Ray's failure, not
  the runs': the local instance is restarted and the runs resume; on a cluster the sweep stops
  naming the runs affected (RayExecutor, ray_node.py);
* an error of the run itself (a bad override, a NaN loss) is caught in the task and returned:
  Ray does not retry it, the run is reported failed with its one error line, the others go on;
* the task writes its log to WORKDIR/train.log (logs.py; each attempt starts with a header line
  naming its host and pid, and ends with how many of its compilations came from JAX's
  persistent compilation cache);
* where several runs share a CPU machine, each run pins its worker to cores no other run holds
  (pinning.py).
"""
import os
import socket
import time

from research.sweeps import ray_node
from research.sweeps.logs import log_to
from research.sweeps.one_run import (default_compilation_cache, error_line, run_one,
                                     use_compilation_cache)
from research.sweeps.pinning import cpu_slot
from research.sweeps.progress import Progress

RayNodeLost = ray_node.RayNodeLost


def remote_run(run, runs_dir: str, pin_cpus: int, compilation_cache: str = "") -> dict:
  """The Ray task: `run_one` with the worker pinned where runs share a CPU machine, and the run's
  output in WORKDIR/train.log."""
  import ray
  ray_node.exit_with_raylet()
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
    elif "compiles" in outcome:
      log.write(f"compilation cache: {outcome['cache_hits']} of {outcome['compiles']} "
                f"compilations read from {compilation_cache or '(no cache)'}\n")
  return {**outcome, "node": node, "cores": cores}


def remote_evals(run, items, runs_dir: str, pin_cpus: int) -> str:
  """The Ray task of a run's test-time evaluations (evals.compute): '' or the error line."""
  from research.sweeps import evals
  ray_node.exit_with_raylet()
  with cpu_slot(pin_cpus):
    try:
      evals.compute(run, runs_dir, items)
    except Exception as e:  # the driver scores it again and reports the error itself
      return error_line(e)
  return ""


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
  cluster at `address` ("auto", "HOST:PORT", "ray://HOST:10001"). One executor serves a whole
  sweep (`with RayExecutor(...) as ex:` then `ex.run(...)` per batch): it connects on the first
  batch that needs a worker and disconnects at the end, so the learning-rate search, the runs
  and the evaluations share one Ray instance and its warm workers.

  Per-run resources: `num_cpus`, `num_gpus` and `resources` ({"TPU": 4}); those left None are
  chosen from the cluster: one GPU per run where there are GPUs, a host's TPU chips where there
  are TPUs, else all the CPUs of the largest node (one run at a time per CPU machine: XLA already
  uses every core).

  A lost node: on the local instance it started, the executor restarts Ray (up to `restarts`
  times, one log line each naming Ray's failure) and the interrupted runs resume from their
  checkpoints; on a cluster it joined it raises ray_node.RayNodeLost naming the runs affected.
  """

  def __init__(self, address: str = "", num_cpus: float | None = None,
               num_gpus: float | None = None, resources: dict | None = None,
               max_retries: int = 3, restarts: int = 2, object_store_mb: int = 256, log=print):
    self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
    self.resources = dict(resources or {})
    self.max_retries, self.restarts = max_retries, restarts
    self.object_store_mb, self.log = object_store_mb, log
    self._connected = False  # this executor called ray.init (and shuts Ray down)
    self._ready = False  # a connection exists (this executor's or its caller's)
    self.node = None  # ray_node.LocalNode of the local instance this executor started
    self.restarts_done = 0
    self.start_seconds = 0.0
    self._remote = {}  # max_calls -> remote_run as a Ray remote function
    self._announced = False  # the "ray: N node(s) ..." line of this connection was logged

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def connect(self) -> None:
    import logging

    import ray
    if self._ready:
      return
    t0 = time.time()
    if ray.is_initialized():  # a notebook or a test already holds a connection: use it
      pass
    elif self.address:
      from research import UserError
      ray_node.check_reachable(self.address)
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
      self.node = ray_node.LocalNode()
    self._ready, self._announced = True, False
    self.start_seconds = time.time() - t0

  def close(self) -> None:
    if self._connected:
      import ray
      ray.shutdown()  # a local instance stops with it; a cluster just loses this driver
    self._connected = self._ready = False

  def _nodes(self):
    import ray
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]

  def task_options(self) -> dict:
    """Ray options of one run, defaults filled in from the cluster's nodes."""
    from research import UserError
    self.connect()
    nodes = self._nodes()
    if not nodes:
      raise ray_node.RayNodeLost(self._lost_message("no node of it is alive", [], []))
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

  def _task(self):
    """(the run's remote function with its options, its options, CPUs to pin, slots); says
    once per connection what it runs where."""
    import ray
    options = dict(self.task_options())
    pin = int(options["num_cpus"]) if not (options["num_gpus"] or options["resources"]) else 0
    max_calls = options.pop("max_calls")
    if max_calls not in self._remote:
      self._remote[max_calls] = ray.remote(max_calls=max_calls)(remote_run)
    task = self._remote[max_calls].options(**options)
    slots = self.slots(options)
    if not self._announced:
      self._announced = True
      self.log(f"ray: {len(self._nodes())} node(s) (connected in {self.start_seconds:.1f}s), "
               f"{slots} run(s) at a time, per run "
               f"{options['num_cpus']:g} CPU, {options['num_gpus']:g} GPU"
               + (f", {options['resources']}" if options["resources"] else ""))
    return task, options, pin, slots

  def run(self, runs, runs_dir: str, progress: Progress, outcomes: dict,
          compilation_cache: str = "") -> None:
    """Submits the runs (as many at once as fit), records each outcome as it arrives. A run
    whose worker died more than max_retries times is failed with Ray's error line; a lost node
    restarts Ray or raises ray_node.RayNodeLost (see the class)."""
    import ray
    self.connect()
    try:  # the node may have died since the last batch (during the evaluations, say)
      self._check_node()
    except _NodeDied as died:
      self._restart(died.reason, [], runs)
    task, options, pin, slots = self._task()
    pending, inflight = list(runs), {}
    checked = time.time()
    try:
      while pending or inflight:
        try:
          self._check_node()
          if time.time() - checked > 10:  # nodes may join or leave
            slots, checked = self.slots(options), time.time()
          while pending and len(inflight) < slots:
            run = pending.pop(0)
            inflight[task.remote(run, runs_dir, pin, compilation_cache)] = run
          progress.update(running=len(inflight), pending=len(pending), slots=slots)
          try:
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
          except ray.exceptions.RayError as e:
            if self._node_failed(e):
              raise _NodeDied(self._reason(e)) from None
            raise
          for ref in ready:
            try:
              outcome = ray.get(ref)
            except ray.exceptions.RayError as e:
              if self._node_failed(e):  # the run stays in flight: interrupted, not failed
                raise _NodeDied(self._reason(e)) from None
              # The worker died more than max_retries times (killed, out of memory).
              outcome = {"status": "failed", "results": {}, "seconds": 0.0,
                         "error": error_line(e).splitlines()[0]}
            run = inflight.pop(ref)
            outcomes[run.name] = outcome
            progress.finished(run, outcome)
        except _NodeDied as died:
          interrupted = list(inflight.values())
          inflight = {}
          if self.node is None:  # a cluster this executor joined: say so and stop
            raise ray_node.RayNodeLost(self._lost_message(died.reason, interrupted, pending))
          self._restart(died.reason, interrupted, pending)
          pending = interrupted + pending
          task, options, pin, slots = self._task()
      progress.update(running=0, pending=0)
    except KeyboardInterrupt:
      for ref in inflight:
        ray.cancel(ref, force=True)  # checkpoints are committed atomically: they stay intact
      raise

  def _check_node(self) -> None:
    """Raises _NodeDied when a process of the local Ray node is gone (within a second of it)."""
    if self.node is not None and self.node.dead():
      raise _NodeDied(self._reason())

  def _node_failed(self, e: BaseException) -> bool:
    return ray_node.is_node_error(e) or bool(self.node is not None and self.node.dead())

  def _reason(self, e: BaseException | None = None) -> str:
    """Ray's failure in words: the node processes that died and Ray's error."""
    dead = self.node.dead() if self.node is not None else []
    parts = [", ".join(dead) + " exited"] if dead else []
    if e is not None:
      parts.append(type(e).__name__ if dead else ray_node.describe(e))
    return "; ".join(parts)

  def _lost_message(self, reason: str, interrupted, pending) -> str:
    where = f"the Ray cluster at {self.address}" if self.address else "the Ray instance"
    names = ", ".join(r.name for r in interrupted) or "none"
    return (f"{where} lost a node ({reason}); runs interrupted: {names}; {len(pending)} not "
            "started. Not the runs' own failure: their checkpoints are kept; rerun the same "
            "command once the cluster is healthy (finished runs are read back)")

  def _restart(self, reason: str, interrupted, pending) -> None:
    """Ends what is left of the dead local node and starts Ray again, or raises RayNodeLost
    when the restarts are used up."""
    import ray
    if self.restarts_done >= self.restarts:
      names = ", ".join(r.name for r in interrupted) or "none"
      raise ray_node.RayNodeLost(
          f"the local Ray node died ({reason}) and was restarted {self.restarts_done} time(s) "
          f"already (--ray_restarts={self.restarts}); stopping. Runs interrupted: {names}; "
          f"{len(pending)} not started. Not the runs' own failure: their checkpoints are kept; "
          "rerun the same command to resume")
    self.restarts_done += 1
    self.log(f"ray: the local Ray node died ({reason}); restarting Ray ({self.restarts_done} of "
             f"{self.restarts}): {len(interrupted)} interrupted run(s) resume from their "
             f"checkpoints, {len(pending)} pending")
    self.node.end_leftovers()
    ray.shutdown()
    self._connected = self._ready = False
    self.node = None
    self.connect()

  def evaluate(self, jobs, runs_dir: str) -> dict:
    """Scores test-time evaluations in the workers (evals.compute), where the runs' imports,
    data and compiled programs already are: jobs [(run, [(name, test_overrides), ...])].
    Returns {run name: error line} for the jobs that did not finish (the caller scores those
    itself); only where this executor is already connected, else every job is returned."""
    import ray
    if not self._ready or not jobs:
      return {run.name: "not connected" for run, _ in jobs}
    try:
      options = dict(self.task_options(), max_retries=0)
      pin = int(options["num_cpus"]) if not (options["num_gpus"] or options["resources"]) else 0
      task = ray.remote(max_calls=options.pop("max_calls"))(remote_evals).options(**options)
      refs = {task.remote(run, items, runs_dir, pin): run for run, items in jobs}
      errors = {}
      for ref, run in refs.items():
        try:
          error = ray.get(ref)
        except ray.exceptions.RayError as e:
          error = error_line(e).splitlines()[0]
        if error:
          errors[run.name] = error
      return errors
    except ray.exceptions.RayError as e:
      return {run.name: error_line(e) for run, _ in jobs}


class _NodeDied(Exception):
  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


def run_runs(runs, runs_dir: str, executor: str = "ray", log=print, progress=None,
             compilation_cache: str | None = None, ray_executor: "RayExecutor | None" = None,
             **ray_options) -> dict:
  """Runs (or reads back) every run; returns {run.name: outcome} (see `run_one`).

  `compilation_cache`: JAX's persistent compilation cache for the runs (None: a directory
  local to each machine, "": none). `ray_executor`: an open RayExecutor to run them on (a
  sweep's, shared by its stages); without one, a RayExecutor made from `ray_options` serves
  this call only.
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
  elif todo and ray_executor is not None:
    ray_executor.run(todo, runs_dir, progress, outcomes, compilation_cache)
  elif todo:
    with RayExecutor(log=log, **ray_options) as own:
      own.run(todo, runs_dir, progress, outcomes, compilation_cache)
  progress.close()
  return outcomes
