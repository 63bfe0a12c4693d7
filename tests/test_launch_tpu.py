import shlex
import subprocess
import sys

import pytest

from conftest import ROOT
from research.tpu import slices as tpu


def test_dry_run_prints_the_gcloud_commands():
  proc = subprocess.run(
      [sys.executable, "scripts/launch_tpu.py", "--tpu=dvc-pod", "--zone=us-central2-b",
       "--project=my-proj", "--accelerator_type=v4-32", "--spot", "--workdir=gs://b/runs/cnn 1",
       "--config=configs/mnist_cnn.py:tpu", "--override=seed=3", "--tfds_data_dir=gs://b/tfds",
       "--dry_run", "--nopreflight"], cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  lines = [l for l in proc.stdout.splitlines() if not l.startswith("#")]
  argvs = [shlex.split(l) for l in lines]
  create, archive, scp, install, run = argvs
  assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "dvc-pod"]
  for flag in ("--accelerator-type=v4-32", "--zone=us-central2-b", "--project=my-proj", "--spot",
               "--version=tpu-ubuntu2204-base"):
    assert flag in create
  assert archive[:2] == ["git", "archive"]
  assert scp[4] == "scp" and "--worker=all" in scp and "dvc-pod:~/" in scp
  assert install[4:6] == ["ssh", "dvc-pod"] and "--worker=all" in install
  assert "pip install" in install[-3] or any("pip install" in a for a in install)
  assert run[4:6] == ["ssh", "dvc-pod"] and "--worker=all" in run
  remote = next(a for a in run if a.startswith("--command=")).removeprefix("--command=")
  remote_argv = shlex.split(remote.split("&&", 1)[1])
  assert remote_argv[:4] == ["TFDS_DATA_DIR=gs://b/tfds", "python3", "-m", "research.main"]
  assert "--config=configs/mnist_cnn.py:tpu" in remote_argv
  assert "--workdir=gs://b/runs/cnn 1" in remote_argv  # quoted through two shells
  assert "--distributed" in remote_argv and "--config.seed=3" in remote_argv


def _launch(*args):
  return subprocess.run([sys.executable, "scripts/launch_tpu.py", "--tpu=dvc", "--zone=us-central2-b",
                         "--workdir=gs://b/runs/mlp", "--config=configs/mnist_mlp.py:tpu",
                         "--override=dataset=breast_cancer", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not tpu.libtpu_installed(), reason="libtpu is not installed (scripts/env.sh)")
def test_dry_run_shows_the_preflight_report():
  proc = _launch("--accelerator_type=v5litepod-8", "--override=batch_size=64", "--dry_run")
  assert proc.returncode == 0, proc.stderr
  report = [l[2:] for l in proc.stdout.splitlines() if l.startswith("# ")]
  assert any(l.startswith("topology") and "v5e-8" in l for l in report)
  assert any(l.startswith("chips / hosts") and l.endswith("8 / 1") for l in report)
  assert any(l.startswith("HBM per chip needed") for l in report)
  commands = [l for l in proc.stdout.splitlines() if not l.startswith("#")]
  assert shlex.split(commands[0])[4:6] == ["create", "dvc"]


@pytest.mark.skipif(not tpu.libtpu_installed(), reason="libtpu is not installed (scripts/env.sh)")
def test_a_failing_preflight_stops_the_launch_before_any_gcloud_command():
  # Without --dry_run: a passing preflight would go on to call gcloud.
  proc = _launch("--accelerator_type=v4-32", "--override=batch_size=72")
  assert proc.returncode != 0
  assert "gcloud" not in proc.stdout
  assert proc.stderr.strip().splitlines() == [
      "error: TPU preflight for v4-32 failed, nothing was created: batch_size 72 must be a "
      "positive multiple of the 16 devices"]
