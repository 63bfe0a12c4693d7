"""Orbax checkpoints: preemption (SIGTERM) and crashes (SIGKILL) resume bit-identically, bad
workdirs are refused untouched, corrupt checkpoints are skipped, any flavour restores any other."""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess

import jax
import numpy as np
import pytest

from conftest import ROOT, cli_args, run_cli, tiny_config
from research import UserError, checkpoint, experiment, metrics, models, train

STEPS = 60
FLAGS = [f"--config.num_train_steps={STEPS}", "--config.batch_size=32", "--config.steps_per_call=5",
         "--config.log_every_steps=5", "--config.checkpoint_every_steps=20",
         "--config.parallelism=single", "--config.eval_batch_size=2000"]


def _cli(workdir, *extra, child=False):
  return cli_args("--config=configs/mnist_mlp.py", f"--workdir={workdir}", *FLAGS, *extra,
                  child=child)


@pytest.fixture(scope="module")
def reference(mnist, tmp_path_factory):
  """An uninterrupted run: its workdir, results and final params."""
  workdir = tmp_path_factory.mktemp("reference")
  proc = subprocess.run(_cli(workdir), cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, json.load(open(workdir / "results.json")), experiment.load_model(str(workdir))[1]


def _numbers(results):
  return {k: results[k] for k in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "steps")}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_at_a_random_step_then_resumed_is_bit_identical(reference, tmp_path, spawn, sig):
  ref_dir, ref_results, ref_params = reference
  # SIGKILL after the save at step 40 started: orbax commits the async save at 20 before it
  # starts the next, so there is a checkpoint to go back to and 5-15 steps of work are lost.
  first = 5 if sig == signal.SIGTERM else 45
  kill_after = random.Random(f"{sig}-{os.getpid()}").choice(range(first, STEPS - 10, 5))
  workdir = tmp_path / "w"
  # Each chunk of 5 steps is delayed by 0.3 s (tests/child_main.py), so the run is still going
  # when the test has seen the step's log line and signals it.
  proc = spawn(_cli(workdir, child=True), "first", env=dict(os.environ, CHILD_CHUNK_DELAY="0.3"))
  assert proc.wait_for(f"step {kill_after}/{STEPS}", timeout=300), proc.tail()
  proc.signal(sig)
  code = proc.wait(300)
  output = proc.output()
  assert not (workdir / "results.json").exists()  # it did not finish
  if sig == signal.SIGTERM:
    assert code == 143, proc.tail()
    saved = [l for l in output.splitlines() if l.startswith("preempted: checkpoint at step")]
    assert len(saved) == 1, proc.tail()
    step = int(saved[0].split()[4])
    assert step >= kill_after  # it finished the step it was in, then saved
    assert step in checkpoint.Checkpointer(str(workdir)).steps()
  else:
    assert code == -signal.SIGKILL
    assert 20 in checkpoint.Checkpointer(str(workdir)).steps(), f"killed after {kill_after}"
  logged_before = _metric_steps(workdir)
  seconds_before = json.load(open(workdir / train.SECONDS_FILE))
  resumed = spawn(_cli(workdir), "resumed")
  assert resumed.wait(600) == 0, resumed.tail()
  assert "resumed from the checkpoint at step" in resumed.output(), f"killed after {kill_after}"
  restored = int(resumed.output().split("resumed from the checkpoint at step")[1].split()[0])
  results = json.load(open(workdir / "results.json"))
  assert _numbers(results) == _numbers(ref_results)
  # metrics.jsonl: the reference's lines, once each and in order, though the killed run had
  # logged steps past its checkpoint (SIGKILL) that the resumed run trained again.
  if sig == signal.SIGKILL:
    assert max(logged_before["train"]) > restored, (logged_before, restored)
  assert _metric_steps(workdir) == _metric_steps(ref_dir)
  # train_seconds adds up over both parts: the time before the checkpoint is not forgotten.
  assert seconds_before[str(restored)] > 0
  assert results["train_seconds"] > seconds_before[str(restored)]
  tests = [m for m in metrics.read_jsonl(workdir / "metrics.jsonl") if m["split"] == "test"]
  assert tests[-1]["train_seconds"] == results["train_seconds"]
  params = experiment.load_model(str(workdir))[1]
  for a, b in zip(jax.tree.leaves(ref_params), jax.tree.leaves(params)):
    assert np.array_equal(a, b)  # bitwise


def _metric_steps(workdir):
  """{split: [step of each metrics.jsonl line of that split, in file order]}."""
  out = {}
  for m in metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl")):
    out.setdefault(m["split"], []).append(m["step"])
  return out


def test_resume_drops_metric_lines_past_the_checkpoint(tmp_path):
  lines = [{"split": "train", "step": s, "loss": 1.0} for s in (10, 20, 30, 40)]
  lines += [{"split": "test", "step": 20, "accuracy": 0.5}, {"split": "test", "step": 40, "accuracy": 0.6}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines) + '{"split": "tr')
  writer = metrics.MetricWriter(str(tmp_path))
  writer.drop_after(20)  # resumed from the checkpoint at step 20; the cut-short last line goes too
  writer.write("train", 30, {"loss": 2.0})
  writer.write("test", 30, {"accuracy": 0.7})
  writer.close()
  kept = metrics.read_jsonl(tmp_path / "metrics.jsonl")
  assert [(m["split"], m["step"]) for m in kept] == [("train", 10), ("train", 20), ("test", 20),
                                                    ("train", 30), ("test", 30)]
  assert kept[3]["loss"] == 2.0
  writer = metrics.MetricWriter(str(tmp_path))
  writer.drop_after(30, redo_final=True)  # the final evaluation at step 30 will be written again
  writer.close()
  kept = metrics.read_jsonl(tmp_path / "metrics.jsonl")
  assert [(m["split"], m["step"]) for m in kept][-2:] == [("test", 20), ("train", 30)]


def _tree_digest(path):
  digest = hashlib.sha256()
  for root, dirs, files in sorted(os.walk(path)):
    dirs.sort()
    for name in sorted(files):
      p = os.path.join(root, name)
      digest.update(p.encode())
      digest.update(open(p, "rb").read())
      digest.update(str(os.stat(p).st_mtime_ns).encode())
  return digest.hexdigest()


def test_workdir_of_another_model_is_refused_untouched(reference, tmp_path):
  workdir = tmp_path / "copy"
  shutil.copytree(reference[0], workdir)
  before = _tree_digest(workdir)
  proc = run_cli(["--config=configs/mnist_mlp.py", f"--workdir={workdir}", *FLAGS,
                  "--config.model=cnn", "--config.learning_rate=0.01"])
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: workdir {workdir} holds a run with a different config")
  assert "learning_rate: 0.001 -> 0.01" in last and "model: 'mlp' -> 'cnn'" in last
  assert _tree_digest(workdir) == before


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(reference, tmp_path, caplog):
  workdir = tmp_path / "copy"
  shutil.copytree(reference[0], workdir)
  ckpt = checkpoint.Checkpointer(str(workdir))
  steps = ckpt.steps()
  assert steps == [40, 60]  # max_checkpoints_to_keep=2
  # Truncate every data file of the newest checkpoint, as a kill during a write would.
  for root, _, files in os.walk(workdir / "checkpoints" / "60"):
    for name in files:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(0)
  template = experiment.create_train_state(tiny_config("mlp"), models.create_model(
      tiny_config("mlp"), 10), (28, 28, 1), STEPS)
  with caplog.at_level("WARNING"):
    state, step = checkpoint.Checkpointer(str(workdir)).restore(template)
  assert step == 40 and int(state.step) == 40
  assert "step 60" in caplog.text and "unreadable" in caplog.text
  # Remove the files of the older one too: nothing readable is left, and we say so.
  shutil.rmtree(workdir / "checkpoints" / "40" / "default")
  with pytest.raises(UserError, match="no readable checkpoint"):
    checkpoint.Checkpointer(str(workdir)).restore(template)


def test_eval_mode(reference, tmp_path):
  ref_dir, ref_results, _ = reference
  before = _tree_digest(ref_dir / "checkpoints")
  proc = run_cli(["--config=configs/mnist_mlp.py", f"--workdir={ref_dir}", *FLAGS, "--mode=eval"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["step"] == STEPS and out["test_accuracy"] == ref_results["test_accuracy"]
  assert _tree_digest(ref_dir / "checkpoints") == before
  proc = run_cli(["--config=configs/mnist_mlp.py", f"--workdir={ref_dir}", *FLAGS, "--mode=eval",
                  "--checkpoint_step=7"])
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: no checkpoint for step 7")
  proc = run_cli(["--config=configs/mnist_mlp.py", f"--workdir={tmp_path}/empty", *FLAGS,
                  "--mode=eval"])
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: no checkpoints in")


def test_checkpoints_restore_across_flavours_and_device_counts(reference, tmp_path):
  ref_dir, ref_results, _ = reference
  config = tiny_config("mlp", num_train_steps=STEPS, steps_per_call=5, log_every_steps=5,
                       checkpoint_every_steps=20)
  # Written by one device, read by jit and pmap over 8 devices.
  for flavour in ("jit", "pmap"):
    config.parallelism = flavour
    out = train.evaluate_checkpoint(config, str(ref_dir))
    assert out["test_accuracy"] == ref_results["test_accuracy"]
    assert out["test_loss"] == pytest.approx(ref_results["test_loss"], rel=1e-5)
  # Written by jit over 8 devices, read by one device.
  config.parallelism = "jit"
  jit_dir = tmp_path / "jit8"
  jit_results = train.train_and_evaluate(config, str(jit_dir))
  assert jit_results["num_devices"] == 8
  config.parallelism = "single"
  out = train.evaluate_checkpoint(config, str(jit_dir))
  assert out["test_accuracy"] == jit_results["test_accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("size", ["20k", "300k"])
def test_full_disk_is_one_clear_error_line(mnist, tmp_path, size):
  # 20k fills up with the run's own files, 300k (or 20k, when orbax's background writer gets
  # there first) inside the first checkpoint, whose writer threads go on printing tracebacks
  # while the run exits: the error line must still be the last one.
  mnt = tmp_path / "tiny"
  mnt.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                    capture_output=True).returncode:
    pytest.skip("cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN)")
  try:
    proc = run_cli(["--config=configs/mnist_mlp.py", f"--workdir={mnt}/w", *FLAGS], timeout=300)
  finally:
    subprocess.run(["umount", str(mnt)])
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last in (f"error: cannot write checkpoints to {mnt}/w/checkpoints: No space left on device",
                  f"error: cannot write the run's files to {mnt}/w: No space left on device")
