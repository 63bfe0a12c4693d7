import shlex
import subprocess
import sys

from conftest import ROOT


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
