"""Ray's own failures during a sweep: the sweep says so, survives, and gives the cells of an
undisturbed inline run.

A sweep of two tiny MLP runs (configs/sweeps/smoke.py at seed 0, 40 steps) is run by the command line,
in a process of its own, with test-only pauses at four moments of one run (a sitecustomize.py
that only this test puts on the sweep's PYTHONPATH, so the Ray workers load it too; it changes
no number): the first chunk of steps (the one that compiles: the sweep's compilation cache
starts empty), a later chunk, the commit of a checkpoint (orbax's rename of the written
checkpoint into place) and the final evaluation. At each the test SIGKILLs one process: the
raylet, the run's worker, the ray::RuntimeEnvAgent, the ray::DashboardAgent (found by name
among the sweep's descendants). A dead worker is retried by Ray; a dead node process is the
local node's death: the sweep restarts Ray (one line each, naming the processes that died) and
the run resumes from its checkpoint. The cells must be those of the same runs inline.

On a cluster the sweep joined (--ray_address) a lost node stops the sweep with exit 3 and one
line naming Ray's failure and the interrupted run, never blaming the runs.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT
from research.sweeps import executors, grid

SMOKE = os.path.join(ROOT, "configs/sweeps/smoke.py")
OVERRIDES = {"num_train_steps": 40, "checkpoint_every_steps": 20, "log_every_steps": 10,
             "steps_per_call": 10}
PAUSE_S = 0.5
FIRST = "mlp-original-s0"  # the run that is paused (and interrupted), by its name's start

# Loaded by every Python process of the sweep (the driver, Ray's agents, the workers): patches
# research.train's module when it is imported, and only in the run named by DVC_FAULT_RUN.
SITECUSTOMIZE = r'''
import importlib.abc, importlib.util, os, sys, time

_RUN, _PAUSE = os.environ["DVC_FAULT_RUN"], float(os.environ["DVC_FAULT_PAUSE"])


def _pause(what, workdir, seconds=_PAUSE):
  if _RUN in str(workdir):
    print(f"fault-test: {what} pid {os.getpid()}", flush=True)
    time.sleep(seconds)


def _patch(train):
  import asyncio
  from orbax.checkpoint._src.path import atomicity
  indices, evaluate = train.batch_indices, train.Experiment.evaluate
  finalize = atomicity.AtomicRenameTemporaryPath.finalize
  state = {}

  def batch_indices(seed, start, *args, **kwargs):
    if start == state.setdefault("first", start):  # no pause: the kill lands in the compile
      _pause("compile", state.get("workdir", ""), seconds=0)
    else:
      _pause(f"chunk {start}", state.get("workdir", ""))
    return indices(seed, start, *args, **kwargs)

  def train_and_evaluate(config, workdir, _real=train.train_and_evaluate):
    state.clear()
    state["workdir"] = workdir
    return _real(config, workdir)

  def experiment_evaluate(self, params, split="test"):  # longer: the node's death takes a moment
    _pause(f"evaluate {split}", self.workdir, seconds=2 * _PAUSE)
    return evaluate(self, params, split)

  async def commit(self):
    if _RUN in str(self._final_path):
      print(f"fault-test: commit {self._final_path.name} pid {os.getpid()}", flush=True)
      await asyncio.sleep(2 * _PAUSE)
    return await finalize(self)

  train.batch_indices, train.train_and_evaluate = batch_indices, train_and_evaluate
  train.Experiment.evaluate = experiment_evaluate
  atomicity.AtomicRenameTemporaryPath.finalize = commit


class _Finder(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name != "research.train":
      return None
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(name)
    run = spec.loader.exec_module

    def exec_module(module):
      run(module)
      _patch(module)

    spec.loader.exec_module = exec_module
    return spec


sys.meta_path.insert(0, _Finder())
'''


def _descendants(pid):
  import psutil
  try:
    return psutil.Process(pid).children(recursive=True)
  except psutil.Error:
    return []


def _kill_named(pid, name):
  """SIGKILLs the descendant of `pid` called `name`; returns its pid."""
  for p in _descendants(pid):
    try:
      if p.name() == name:
        p.kill()
        return p.pid
    except Exception:
      continue
  raise AssertionError(f"no {name} among the sweep's processes: "
                       f"{sorted({p.name() for p in _descendants(pid)})}")


class Markers:
  """The pause lines of the paused run's train.log, read as they are written."""

  def __init__(self, runs_dir, prefix):
    self.dir, self.prefix, self.seen = runs_dir, prefix, 0

  def _lines(self):
    if not os.path.isdir(self.dir):
      return []
    for name in os.listdir(self.dir):
      if name.startswith(self.prefix) and os.path.exists(os.path.join(self.dir, name, "train.log")):
        with open(os.path.join(self.dir, name, "train.log"), errors="replace") as f:
          return [line for line in f if line.startswith("fault-test: ")]
    return []

  def wait(self, kind, proc, timeout=120):
    """The pid of the next new pause line of `kind` (older lines are skipped)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
      lines = self._lines()
      for i in range(self.seen, len(lines)):
        if lines[i].startswith(f"fault-test: {kind}"):
          self.seen = i + 1
          return int(lines[i].split("pid ")[1])
      time.sleep(0.02)
    raise AssertionError(f"no {kind!r} pause in {self.prefix}'s train.log; seen: {self._lines()}")


def _sweep_env(tmp_path):
  site = tmp_path / "site"
  site.mkdir()
  (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
  return {**os.environ, "PYTHONPATH": os.pathsep.join(
      [str(site)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
          "DVC_FAULT_RUN": FIRST, "DVC_FAULT_PAUSE": str(PAUSE_S)}


def _sweep_args(out, *extra):
  sets = [f"--set={k}={v}" for k, v in OVERRIDES.items()]
  return [sys.executable, "-m", "research.sweeps", f"--sweep={SMOKE}", f"--output_dir={out}",
          f"--compilation_cache={out}/jax-cache", "--seeds=0", *sets, *extra]


def _inline_cells(tmp_path):
  runs = grid.expand(grid.load_sweep(SMOKE), dict(OVERRIDES), seeds=[0])
  outcomes = executors.run_runs(runs, str(tmp_path / "inline"), "inline", log=lambda line: None)
  return {run.name: (outcomes[run.name]["results"]["test_accuracy"],
                     outcomes[run.name]["results"]["test_loss"]) for run in runs}


@pytest.mark.slow
def test_a_sweep_survives_its_ray_node_dying_and_gives_the_inline_cells(mnist, tmp_path):
  import pandas as pd
  out = tmp_path / "out"
  log_path = tmp_path / "sweep.log"
  with open(log_path, "w") as log:
    proc = subprocess.Popen(_sweep_args(out, "--ray_restarts=3"), cwd=ROOT,
                            env=_sweep_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
  markers = Markers(str(out / "runs"), FIRST)
  killed = []
  try:
    markers.wait("compile", proc)
    killed.append(("raylet", _kill_named(proc.pid, "raylet")))
    worker = markers.wait("chunk", proc)
    os.kill(worker, signal.SIGKILL)
    killed.append(("worker", worker))
    markers.wait("commit", proc)
    killed.append(("ray::RuntimeEnvAgent", _kill_named(proc.pid, "ray::RuntimeEnvAgent")))
    markers.wait("evaluate", proc)
    killed.append(("ray::DashboardAgent", _kill_named(proc.pid, "ray::DashboardAgent")))
    rc = proc.wait(timeout=240)
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
  output = log_path.read_text()
  assert rc == 0, output[-4000:]
  restarts = re.findall(r"ray: the local Ray node died \((.*?)\); restarting Ray \((\d) of 3\)",
                        output)
  assert [n for _, n in restarts] == ["1", "2", "3"], output[-4000:]
  for (name, pid), (reason, _) in zip([k for k in killed if k[0] != "worker"], restarts):
    assert f"{name} (pid {pid})" in reason  # the process that was killed, by name and pid
  # the project's own error lines start with "error:"; Ray's log may say "RPC error: ..." mid-line
  assert "every candidate" not in output
  assert not re.search(r"^error:", output, re.M), output[-4000:]
  frame = pd.read_csv(out / "results.csv")
  assert (frame["status"].isin(["trained", "resumed"])).all() and len(frame) == 2
  cells = {os.path.basename(w): (a, l) for w, a, l in
           zip(frame["workdir"], frame["test_accuracy"], frame["test_loss"])}
  assert cells == _inline_cells(tmp_path)  # bit for bit
  paused = [w for w in frame["workdir"] if os.path.basename(w).startswith(FIRST)][0]
  with open(os.path.join(paused, "train.log")) as f:
    headers = [line for line in f if line.startswith("=== ") and ": pid " in line]
  assert len(headers) == 5  # the first attempt and one after each of the four kills
  steps = [m["step"] for m in pd.read_json(os.path.join(paused, "metrics.jsonl"),
                                            lines=True).to_dict("records")
           if m["split"] == "train"]
  assert steps == [10, 20, 30, 40]  # no line repeated or lost across the kills


def _free_port():
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_a_lost_node_of_a_joined_cluster_stops_the_sweep_naming_ray_not_the_runs(mnist, tmp_path):
  import secrets
  temp = tempfile.mkdtemp(prefix="dvcrf", dir="/tmp")  # Ray's AF_UNIX sockets: no long paths
  port = _free_port()
  env = {**_sweep_env(tmp_path), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
  head = subprocess.Popen(
      ["ray", "start", "--head", f"--port={port}", f"--temp-dir={temp}", "--num-cpus=2",
       "--include-dashboard=false", f"--ray-client-server-port={_free_port()}",
       "--object-store-memory=100000000", "--disable-usage-stats", "--block"],
      stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT, env=env,
      start_new_session=True)
  out = tmp_path / "out"
  sweep = None
  try:
    deadline = time.time() + 120
    while "Ray runtime started" not in (tmp_path / "head.log").read_text():
      assert time.time() < deadline and head.poll() is None, (tmp_path / "head.log").read_text()
      time.sleep(0.2)
    with open(tmp_path / "sweep.log", "w") as log:
      sweep = subprocess.Popen(_sweep_args(out, f"--ray_address=127.0.0.1:{port}"), cwd=ROOT,
                               env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    Markers(str(out / "runs"), FIRST).wait("chunk", sweep)
    agent = _kill_named(head.pid, "ray::RuntimeEnvAgent")
    rc = sweep.wait(timeout=120)
  finally:
    left = _descendants(head.pid)
    if sweep is not None and sweep.poll() is None:
      os.killpg(sweep.pid, signal.SIGKILL)
      sweep.wait()
    head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
    try:
      head.wait(timeout=30)
    except subprocess.TimeoutExpired:
      os.killpg(head.pid, signal.SIGKILL)
      head.wait()
    for p in left:
      try:
        p.kill()
      except Exception:  # gone already
        pass
    shutil.rmtree(temp, ignore_errors=True)
  output = (tmp_path / "sweep.log").read_text()
  assert rc == 3, output[-4000:]
  errors = [line for line in output.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, output[-4000:]
  assert re.match(rf"error: the Ray cluster at 127\.0\.0\.1:{port} lost a node \("
                  r"(LocalRayletDiedError|NodeDiedError|RaySystemError)", errors[0]), errors[0]
  assert f"runs interrupted: {FIRST}" in errors[0] and "1 not started" in errors[0]
  assert "Not the runs' own failure" in errors[0]
  assert "every candidate" not in output and "runs failed" not in output
  assert agent


def test_a_run_leaves_no_global_settings_behind_in_its_process():
  """What a run changes in its (reused) process is put back: JAX flags (a `debug` run turns on
  jax_debug_nans), NumPy's global generator, the environment."""
  import jax
  import numpy as np
  from research.sweeps import one_run
  before = np.random.get_state()[1].copy()
  with one_run.isolated():
    jax.config.update("jax_debug_nans", True)
    np.random.seed(123)
    os.environ["DVC_SET_BY_A_RUN"] = "1"
  assert jax.config.jax_debug_nans is False
  assert np.array_equal(np.random.get_state()[1], before)
  assert "DVC_SET_BY_A_RUN" not in os.environ


def test_a_local_node_that_keeps_dying_stops_the_sweep_naming_ray():
  """Out of restarts: RayNodeLost (the command line's exit 3) names Ray's failure and the
  interrupted runs, and says they did not fail."""
  run = grid.expand(grid.load_sweep(SMOKE), seeds=[0])[0]
  ex = executors.RayExecutor(restarts=0)
  with pytest.raises(executors.RayNodeLost) as lost:
    ex._restart("raylet (pid 1) exited; LocalRayletDiedError", [run], [run, run])
  message = str(lost.value)
  assert message.startswith("the local Ray node died (raylet (pid 1) exited; "
                            "LocalRayletDiedError) and was restarted 0 time(s) already")
  assert f"Runs interrupted: {run.name}; 2 not started. Not the runs' own failure" in message
