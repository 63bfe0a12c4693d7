"""Data parallelism on 8 fake CPU devices: pmap, jit over a mesh and one device agree, and two
processes over localhost (gloo) match one process."""
import json
import os
import signal
import socket
import time

import jax
import numpy as np
import pytest

from conftest import cli_args, report, tiny_config
from research import experiment, train

# The flavours sum the same gradients in a different order (per-device partial sums, then an
# all-reduce), so they differ by float32 rounding only: ~1e-7 of a gradient's scale per step.
# The runs use SGD with momentum, which is linear in the gradients: a rounding difference d in
# a gradient moves a weight by at most lr*d/(1-momentum) = 0.5*d per step, ~1e-6 after 30
# steps here. (Adam is not linear: its first steps move a weight by ~lr*sign(grad), so a
# gradient within rounding of zero can move a weight by 2*lr = 2e-3 in one flavour and not in
# the other, by an amount that depends on the CPU; what Adam adds is tested elsewhere.)
PARAM_ATOL = 2e-5


def _run(tmp_path, parallelism, model="mlp", **kw):
  workdir = tmp_path / parallelism
  cfg = tiny_config(model, parallelism=parallelism, batch_size=64, num_train_steps=30,
                    eval_train=model == "mlp", optimizer="sgd", learning_rate=0.05, **kw)
  results = train.train_and_evaluate(cfg, str(workdir))
  _, params, _ = experiment.load_model(str(workdir))
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


def _launch(spawn, workdir, num_processes, devices_per_process, extra=(), child_env=None,
            extra_for=None):
  """One `research.main` process per process id, output in WORKDIR-NAME-I.log files.

  child_env: {process id: CHILD_* variables} run that process through tests/child_main.py;
  extra_for: {process id: more flags}, after `extra`.
  """
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
  procs = []
  for i in range(num_processes):
    special = (child_env or {}).get(i)
    args = cli_args("--config=configs/mnist_mlp.py", f"--workdir={workdir}",
                    "--config.batch_size=32", "--config.num_train_steps=40",
                    "--config.log_every_steps=10", *extra, *(extra_for or {}).get(i, ()),
                    child=special is not None)
    if num_processes > 1:
      args += [f"--coordinator_address=localhost:{port}", f"--num_processes={num_processes}",
               f"--process_id={i}"]
    procs.append(spawn(args, f"{os.path.basename(workdir)}-{i}", dict(env, **(special or {}))))
  return procs


# A two-process run of 40 MLP steps takes ~30-60 s on two cores, more on a loaded box.
RUN_BOUND = 400


@pytest.mark.slow
@pytest.mark.parametrize("parallelism", ["jit", "pmap"])
def test_two_processes_match_one(mnist, tmp_path, spawn, parallelism):
  flavour = [f"--config.parallelism={parallelism}"]
  two = _launch(spawn, tmp_path / "two", 2, 2, flavour)
  one = _launch(spawn, tmp_path / "one", 1, 4, flavour)[0]
  codes = [p.wait(RUN_BOUND) for p in (*two, one)]
  assert codes == [0, 0, 0], report(*two, one)
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


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_dead_peer_makes_the_other_exit(mnist, tmp_path, spawn, victim):
  bound = 60  # seconds: --heartbeat_timeout=10 plus the coordination service's polling
  procs = _launch(spawn, tmp_path / "w", 2, 1, [
      "--config.num_train_steps=1000000", "--heartbeat_timeout=10", "--config.steps_per_call=1",
      "--config.log_every_steps=1", "--config.eval_train=False"])
  survivor = procs[1 - victim]
  # Wait until both train (process 0 logs steps), then kill one without warning.
  assert procs[0].wait_for("step 5/", timeout=300), report(*procs)
  procs[victim].signal(signal.SIGKILL)
  t0 = time.time()
  code = survivor.wait(bound)
  assert code is not None, f"the survivor still ran {bound} s after its peer died\n" + report(*procs)
  assert code != 0 and time.time() - t0 < bound
  # Either jax.distributed's heartbeat check ends it, or a collective with the dead peer fails
  # first and the stall bound's guard turns that into one line.
  text = survivor.output()
  assert ("another task died" in text or "unhealthy" in text or "heartbeat" in text.lower()
          or "lost a peer in train steps" in text), report(*procs)


@pytest.mark.slow
def test_peer_stalled_at_the_end_makes_the_other_exit_with_one_line(mnist, tmp_path, spawn):
  # Process 1 trains, then blocks in its final evaluation (tests/child_main.py): alive, its
  # heartbeats going on, but taking part in nothing, as a deadlocked or hung peer would. Process
  # 0 waits for it in the final evaluation's collectives until the stall bound ends it. (Process
  # 1's own bound is long, so that it is process 0's bound that acts.)
  stall = 20
  procs = _launch(spawn, tmp_path / "w", 2, 1, [f"--config.stall_timeout={stall}"],
                  child_env={1: {"CHILD_STALL_IN_EVALUATE": "1"}},
                  extra_for={1: ["--config.stall_timeout=600"]})
  assert procs[1].wait_for("child: stalling in evaluate", timeout=RUN_BOUND), report(*procs)
  t0 = time.time()
  code = procs[0].wait(stall + 60)
  elapsed = time.time() - t0
  assert code == 4, report(*procs)
  assert elapsed < stall + 60
  errors = [l for l in procs[0].output().splitlines() if l.startswith("error:")]
  assert errors == [f"error: process 0 of 2 waited over {stall} s in the final test evaluation "
                    "at step 40; a peer is stalled or unreachable (bound: config.stall_timeout); "
                    "exiting"], report(*procs)
  assert not (tmp_path / "w" / "results.json").exists()
