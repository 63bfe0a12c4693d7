"""Sweeps on a real Ray cluster, CPU only: through Ray a sweep gives the rows it gives inline;
it joins an existing two-node cluster by address; a SIGKILLed worker is retried and its run
resumes to the uninterrupted result; a run that raises is reported failed while the others
finish. One module-scoped local cluster serves most tests; the two-node test starts (and ends)
its own processes, never `ray stop`."""
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import jax
import numpy as np
import pytest

from conftest import ROOT
from research.sweeps import executors, grid, one_run, cli as sweep
from research import experiment, metrics

SMOKE = os.path.join(ROOT, "configs/sweeps/smoke.py")
NUMBERS = ("test_accuracy", "test_loss", "steps", "num_params")


def _short_tempdir(prefix):
  return tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # Ray's AF_UNIX sockets: no long paths


def _auth_env():
  """Ray >= 2.52 token auth with a token of the test's own for a `ray start` cluster."""
  return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


@pytest.fixture(scope="module")
def ray_cluster(mnist):
  import ray
  temp = _short_tempdir("dvcray")
  try:  # Ray's default token auth, as the sweep's own local instance uses it
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 2**20, _temp_dir=temp)
    yield ray
  finally:
    ray.shutdown()  # this test's cluster only
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def smoke_runs_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("smoke_runs"))


def _numbers(outcome):
  return {k: outcome["results"][k] for k in NUMBERS}


def _headers(workdir):
  """The header line of each attempt in WORKDIR/train.log."""
  with open(os.path.join(workdir, "train.log")) as f:
    return [line for line in f if line.startswith("=== ")]


@pytest.mark.slow
def test_ray_gives_the_rows_inline_gives(ray_cluster, smoke_runs_dir, tmp_path):
  runs = grid.expand(grid.load_sweep(SMOKE))
  assert len(runs) == 4
  inline = executors.run_runs(runs, str(tmp_path / "inline"), "inline", log=lambda line: None)
  lines = []
  via_ray = executors.run_runs(runs, smoke_runs_dir, "ray", log=lines.append)
  for run in runs:
    assert via_ray[run.name]["status"] == "trained", via_ray[run.name]
    assert _numbers(via_ray[run.name]) == _numbers(inline[run.name])  # bit for bit
    assert via_ray[run.name]["pid"] != os.getpid()  # trained in a Ray worker
    assert len(_headers(os.path.join(smoke_runs_dir, run.name))) == 1
  assert len({o["test_loss"] for o in (v["results"] for v in via_ray.values())}) == 4
  assert lines[-1] == "runs: 4 done, 0 running, 0 failed, 0 pending of 4; ETA 0s"


@pytest.mark.slow
def test_a_run_that_raises_is_reported_failed_and_the_others_finish(
    ray_cluster, smoke_runs_dir, tmp_path, capsys):
  import pandas as pd
  out = tmp_path / "out"
  with pytest.raises(SystemExit) as exit_:  # joins the module's cluster, as a notebook would
    sweep.main([f"--sweep={SMOKE}:broken", f"--runs_dir={smoke_runs_dir}", f"--output_dir={out}"])
  assert exit_.value.code == 1
  err = capsys.readouterr().err
  assert "error: 2 of 6 runs failed" in err
  frame = pd.read_csv(out / "results.csv")
  failed = frame[frame["status"] == "failed"]
  assert len(failed) == 2 and failed["test_accuracy"].isna().all()
  assert all(e.startswith("UserError: unknown model 'no_such_model'") for e in failed["error"])
  finished = frame[frame["status"] != "failed"]
  assert len(finished) == 4 and (finished["test_accuracy"] > 0.3).all()
  assert "| failed run | error |" in (out / "results.md").read_text()
  for workdir in failed["workdir"]:  # tried once: Ray does not retry a run's own error
    assert len(_headers(workdir)) == 1
    assert "error: UserError: unknown model" in open(os.path.join(workdir, "train.log")).read()
    assert os.path.basename(workdir) in err


def test_resources_no_node_has_are_refused(ray_cluster):
  from research import UserError
  options = executors.RayExecutor().task_options()  # the defaults on this 2-CPU node
  assert (options["num_cpus"], options["num_gpus"], options["max_calls"]) == (2, 0, 0)
  with pytest.raises(UserError, match="asks for 1 GPU but no Ray node has that many"):
    executors.RayExecutor(num_gpus=1).task_options()  # Ray would wait forever
  with pytest.raises(UserError, match="asks for 3 CPUs but the largest Ray node has 2"):
    executors.RayExecutor(num_cpus=3).task_options()


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_run_resumes_to_the_same_result(ray_cluster, tmp_path):
  # A run long enough to be killed mid-way: 300 steps, checkpoints every 50.
  overrides = {"num_train_steps": 300, "checkpoint_every_steps": 50}
  run = grid.expand(grid.load_sweep(SMOKE), overrides, seeds=[0])[0]
  runs_dir = str(tmp_path / "ray")
  workdir = os.path.join(runs_dir, run.name)
  outcomes = {}
  thread = threading.Thread(target=lambda: outcomes.update(
      executors.run_runs([run], runs_dir, "ray", log=lambda line: None)))
  thread.start()
  killed, deadline = None, time.time() + 180
  try:
    while killed is None and time.time() < deadline and thread.is_alive():
      logged = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl")) if os.path.exists(
          os.path.join(workdir, "metrics.jsonl")) else []
      if any(m["step"] >= 70 for m in logged):  # the checkpoint at step 50 is committed
        killed = int(re.search(r"pid (\d+)", _headers(workdir)[0]).group(1))
        assert killed != os.getpid()
        os.kill(killed, signal.SIGKILL)
      time.sleep(0.02)
  finally:
    thread.join(timeout=240)
  assert not thread.is_alive(), "the sweep did not finish"
  assert killed is not None, "the run finished before it could be killed"
  outcome = outcomes[run.name]
  assert outcome["status"] == "resumed" and outcome["pid"] != killed
  assert len(_headers(workdir)) == 2  # the killed attempt and Ray's retry
  reference = one_run.run_one(run, str(tmp_path / "inline"))  # uninterrupted, in this process
  assert _numbers(outcome) == _numbers(reference)
  ref_params = experiment.load_model(os.path.join(tmp_path, "inline", run.name))[1]
  for a, b in zip(jax.tree.leaves(ref_params), jax.tree.leaves(experiment.load_model(workdir)[1])):
    assert np.array_equal(a, b)
  steps = [m["step"] for m in metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
           if m["split"] == "train"]
  assert steps == list(range(10, 301, 10))  # no line repeated or out of order after the kill


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait_for(path, text, proc, timeout):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.exists(path) and text in open(path, errors="replace").read():
      return
    if proc.poll() is not None:
      break
    time.sleep(0.2)
  raise AssertionError(f"no {text!r} in {path}: {open(path, errors='replace').read()[-2000:]}")


@pytest.mark.slow
def test_a_sweep_joins_a_two_node_cluster_by_address(mnist, tmp_path):
  """A head and a worker node (one CPU each) started here; the sweep's driver joins them by
  address, and its runs land on both nodes, each pinned to its own core."""
  temp = _short_tempdir("dvcrc")
  port = _free_port()
  env = {**os.environ, **_auth_env()}  # one token for the head, the node and the driver
  common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats", "--block"]
  procs = []
  try:
    with open(tmp_path / "head.log", "w") as log:
      procs.append(subprocess.Popen(
          ["ray", "start", "--head", f"--port={port}", f"--temp-dir={temp}",
           "--include-dashboard=false", f"--ray-client-server-port={_free_port()}", *common],
          stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
    _wait_for(tmp_path / "head.log", "Ray runtime started", procs[0], 120)
    with open(tmp_path / "node.log", "w") as log:
      procs.append(subprocess.Popen(
          ["ray", "start", f"--address=127.0.0.1:{port}", *common],
          stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
    _wait_for(tmp_path / "node.log", "Ray runtime started", procs[1], 120)
    runs_dir = tmp_path / "runs"
    with open(tmp_path / "driver.log", "w") as log:
      driver = subprocess.run(
          [sys.executable, "-m", "research.sweeps", f"--sweep={SMOKE}", f"--runs_dir={runs_dir}",
           f"--ray_address=127.0.0.1:{port}"],
          cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=300)
    output = open(tmp_path / "driver.log").read()
    assert driver.returncode == 0, output[-3000:]
    assert re.search(r"ray: 2 node\(s\) .*, 2 run\(s\) at a time, per run 1 CPU, 0 GPU", output)
    headers = [h for name in os.listdir(runs_dir) if (runs_dir / name).is_dir()
               for h in _headers(runs_dir / name)]
    assert len(headers) == 4
    assert len({re.search(r"ray node (\w+)", h).group(1) for h in headers}) == 2  # both nodes
    assert all(re.search(r"cores \[\d\]", h) for h in headers)  # one core each
    import pandas as pd
    frame = pd.read_csv(runs_dir / "results.csv")
    assert len(frame) == 4 and (frame["status"] == "trained").all()
    assert (frame["test_accuracy"] > 0.3).all() and (frame["steps"] == 20).all()
  finally:
    for proc in procs:  # `ray start --block` stops the processes it started on SIGTERM
      proc.send_signal(signal.SIGTERM)
    for proc in procs:
      try:
        proc.wait(timeout=60)
      except subprocess.TimeoutExpired:
        pass
      try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything of that node left in its process group
      except ProcessLookupError:
        pass
      proc.wait(timeout=10)
    shutil.rmtree(temp, ignore_errors=True)
