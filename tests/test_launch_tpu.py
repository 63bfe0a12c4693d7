import json
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT
from research.tpu import slices as tpu


def test_dry_run_prints_the_gcloud_commands():
  proc = subprocess.run(
      [sys.executable, "scripts/launch_tpu.py", "--tpu=dvc-pod", "--zone=us-central2-b",
       "--project=my-proj", "--accelerator_type=v4-32", "--workdir=gs://b/runs/cnn 1",
       "--config=configs/mnist_cnn.py:tpu", "--override=seed=3", "--tfds_data_dir=gs://b/tfds",
       "--dry_run", "--nopreflight"], cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  lines = [l for l in proc.stdout.splitlines() if not l.startswith("#")]
  argvs = [shlex.split(l) for l in lines]
  create, archive, scp, install, run = argvs
  assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "dvc-pod"]
  for flag in ("--accelerator-type=v4-32", "--zone=us-central2-b", "--project=my-proj",
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



def test_spot_asks_through_a_queued_resource_and_watch_prints_its_loop():
  proc = subprocess.run(
      [sys.executable, "scripts/launch_tpu.py", "--tpu=spotty", "--zone=us-central2-b",
       "--accelerator_type=v5litepod-8", "--spot", "--watch", "--workdir=gs://b/runs/cnn",
       "--dry_run", "--nopreflight"], cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  argvs = [shlex.split(l) for l in proc.stdout.splitlines() if not l.startswith("#")]
  state, create, _, _, _, run, delete = argvs
  assert state[2:6] == ["tpus", "queued-resources", "describe", "spotty"]
  assert create[2:6] == ["tpus", "queued-resources", "create", "spotty"]
  assert "--spot" in create and "--node-id=spotty" in create
  assert "--runtime-version=tpu-ubuntu2204-base" in create
  assert run[4:6] == ["ssh", "spotty"] and "--distributed" in run[-2]
  assert delete[2:6] == ["tpus", "queued-resources", "delete", "spotty"]


def test_watch_decides_from_the_slices_state():
  decide = lambda state, run=None, retries=0: tpu.decide(state, run, retries, 2)
  assert [decide(s) for s in ("ACCEPTED", "WAITING_FOR_RESOURCES", "PROVISIONING")] == ["wait"] * 3
  assert decide("ACTIVE") == "run" and decide("ACTIVE", run=0) == "done"
  assert decide("SUSPENDED", run=255) == "recreate" and decide("FAILED") == "recreate"
  assert decide("", run=255) == "recreate"  # gone: describe found nothing
  assert decide("SUSPENDED", run=255, retries=2) == "give_up"
  assert decide("ACTIVE", run=1) == "failed"  # the run's own error is not a preemption


FAKE_GCLOUD = """\
#!/usr/bin/env python3
# gcloud as a script: answers `queued-resources describe` with the next state of STATES (exit 1
# when it is null: not found), the run's ssh with the next of RUN_CODES, anything else 0.
import json, sys
path = {state!r}
with open(path) as f:
  s = json.load(f)
s["calls"].append(sys.argv[1:])
code = 0
if sys.argv[3:5] == ["queued-resources", "describe"]:
  state = s["states"].pop(0)
  if state is None:
    code = 1
  else:
    print(state)
elif sys.argv[4] == "ssh" and any("research.main" in a for a in sys.argv):
  code = s["run_codes"].pop(0)
with open(path, "w") as f:
  json.dump(s, f)
sys.exit(code)
"""


def _watch(tmp_path, states, run_codes, max_retries=3):
  state = tmp_path / "gcloud.json"
  state.write_text(json.dumps({"states": states, "run_codes": run_codes, "calls": []}))
  fake = tmp_path / "gcloud"
  fake.write_text(FAKE_GCLOUD.format(state=str(state)))
  fake.chmod(0o755)
  proc = subprocess.run(
      [sys.executable, "scripts/launch_tpu.py", "--tpu=spotty", "--zone=z", "--spot", "--watch",
       "--workdir=gs://b/r", "--nopreflight", "--poll_seconds=0", f"--max_retries={max_retries}",
       f"--gcloud={fake}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  calls = json.loads(state.read_text())["calls"]
  return proc, [c[2] + " " + c[3] if c[2] == "queued-resources" else c[3] for c in calls]


def test_watch_requeues_a_preempted_slice_and_restarts_the_run(tmp_path):
  # none yet -> queued; waiting; ACTIVE -> run (the ssh ends 255: preempted); SUSPENDED ->
  # deleted, gone, re-queued; ACTIVE -> run again, which finishes.
  proc, calls = _watch(tmp_path, [None, "WAITING_FOR_RESOURCES", "ACTIVE", "SUSPENDED", None,
                                  "ACTIVE"], [255, 0])
  assert proc.returncode == 0, proc.stderr
  assert calls == ["queued-resources describe", "queued-resources create",
                   "queued-resources describe", "queued-resources describe", "scp", "ssh", "ssh",
                   "queued-resources describe", "queued-resources delete",
                   "queued-resources describe", "queued-resources create",
                   "queued-resources describe", "scp", "ssh", "ssh"]
  lines = proc.stdout.strip().splitlines()
  assert lines[0] == "queueing spotty (v4-8, spot)"
  assert "spotty was lost (SUSPENDED): re-queueing it (1 of 3)" in proc.stdout
  assert lines[-1] == "the run finished on spotty"


def test_watch_gives_up_after_its_retries_in_one_line(tmp_path):
  proc, _ = _watch(tmp_path, ["ACTIVE", "PREEMPTED", None, "ACTIVE", "PREEMPTED"], [255, 255],
                   max_retries=1)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      "error: spotty was lost (PREEMPTED) 2 times; giving up after 1 re-creations (the workdir "
      "keeps its checkpoints)"]
