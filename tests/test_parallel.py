"""Data parallelism on 8 fake CPU devices: pmap, jit over a mesh and one device agree, and two
processes over localhost (gloo) match one process."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import ROOT, tiny_config
from research import train

# Float32 tolerance for params after 30 Adam steps: the flavours sum the same gradients in a
# different order (per-device partial sums + all-reduce), so they differ by rounding only.
PARAM_ATOL = 2e-5


def _run(tmp_path, parallelism, model="mlp", **kw):
  workdir = tmp_path / parallelism
  cfg = tiny_config(model, parallelism=parallelism, batch_size=64, num_train_steps=30,
                    eval_train=model == "mlp", **kw)
  results = train.train_and_evaluate(cfg, str(workdir))
  _, params, _ = train.load_model(str(workdir))
  return results, params


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_pmap_jit_and_single_device_agree(mnist, tmp_path, model):
  assert jax.device_count() == 8
  runs = {p: _run(tmp_path, p, model) for p in ("single", "jit", "pmap")}
  ref_results, ref_params = runs["single"]
  assert runs["jit"][0]["num_devices"] == runs["pmap"][0]["num_devices"] == 8
  for name in ("jit", "pmap"):
    results, params = runs[name]
    for a, b in zip(jax.tree.leaves(ref_params), jax.tree.leaves(params)):
      np.testing.assert_allclose(a, b, rtol=0, atol=PARAM_ATOL, err_msg=name)
    keys = ("test", "train") if model == "mlp" else ("test",)
    for key in keys:
      assert abs(results[f"{key}_loss"] - ref_results[f"{key}_loss"]) < 1e-4, (name, key)
      # accuracy: at most a couple of borderline examples may flip
      assert abs(results[f"{key}_accuracy"] - ref_results[f"{key}_accuracy"]) <= 2e-4, (name, key)
  assert ref_results["test_accuracy"] > 0.5  # it trained


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(workdir, num_processes, devices_per_process, extra=(), port=None):
  port = port or _free_port()
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
  procs = []
  for i in range(num_processes):
    args = [sys.executable, "-m", "research.main", "--config=configs/mnist_mlp.py",
            f"--workdir={workdir}", "--config.batch_size=32", "--config.num_train_steps=40",
            "--config.log_every_steps=10", *extra]
    if num_processes > 1:
      args += [f"--coordinator_address=localhost:{port}", f"--num_processes={num_processes}",
               f"--process_id={i}"]
    procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  return procs


@pytest.mark.parametrize("parallelism", ["jit", "pmap"])
def test_two_processes_match_one(mnist, tmp_path, parallelism):
  flavour = [f"--config.parallelism={parallelism}"]
  two = _launch(tmp_path / "two", 2, 2, flavour)
  outputs = [p.communicate(timeout=400)[0] for p in two]
  assert all(p.returncode == 0 for p in two), outputs[0][-3000:] + outputs[1][-3000:]
  one = _launch(tmp_path / "one", 1, 4, flavour)[0]
  out = one.communicate(timeout=400)[0]
  assert one.returncode == 0, out[-3000:]
  r2 = json.load(open(tmp_path / "two" / "results.json"))
  r1 = json.load(open(tmp_path / "one" / "results.json"))
  assert (r2["num_processes"], r2["num_devices"]) == (2, 4)
  assert (r1["num_processes"], r1["num_devices"]) == (1, 4)
  assert r2["test_count"] == r1["test_count"] == 10_000  # every example once across hosts
  for key in ("test_accuracy", "train_accuracy"):
    assert r2[key] == r1[key], key
  for key in ("test_loss", "train_loss"):
    assert r2[key] == pytest.approx(r1[key], rel=1e-6), key
  # Only process 0 writes: one line per logged step, not two.
  lines = [json.loads(l) for l in open(tmp_path / "two" / "metrics.jsonl")]
  assert [l["step"] for l in lines if l["split"] == "train"] == [10, 20, 30, 40]


@pytest.mark.parametrize("victim", [1, 0])
def test_dead_peer_makes_the_other_exit(mnist, tmp_path, victim):
  bound = 60  # seconds: --heartbeat_timeout=10 plus the coordination service's polling
  procs = _launch(tmp_path / "w", 2, 1, ["--config.num_train_steps=1000000", "--heartbeat_timeout=10",
                                         "--config.steps_per_call=1", "--config.log_every_steps=1",
                                         "--config.eval_train=False"])
  survivor = procs[1 - victim]
  # Wait until both train (process 0 logs steps), then kill one without warning.
  deadline = time.time() + 300
  seen = ""
  while "step 5/" not in seen and time.time() < deadline:
    line = procs[0].stdout.readline()
    if not line:
      break
    seen += line
  assert "step 5/" in seen, seen[-3000:]
  procs[victim].send_signal(signal.SIGKILL)
  t0 = time.time()
  try:
    out = survivor.communicate(timeout=bound)[0]
  except subprocess.TimeoutExpired:
    survivor.kill()
    pytest.fail(f"the surviving process was still running {bound}s after its peer died")
  assert survivor.returncode != 0
  assert time.time() - t0 < bound
  procs[victim].wait()
  text = seen + out
  assert "another task died" in text or "unhealthy" in text or "heartbeat" in text.lower(), text[-3000:]
