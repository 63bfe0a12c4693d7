"""End-to-end: a short real training run, determinism, outputs, the CLI and its bad inputs."""
import json
import re
import os
import subprocess

import numpy as np
import pytest

from conftest import ROOT, run_cli, tiny_config
from research import metrics, train


@pytest.fixture(scope="module")
def mlp_run(mnist, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("mlp")
  return workdir, train.train_and_evaluate(tiny_config("mlp", eval_train=True), str(workdir))


def test_short_training_lowers_the_loss_and_writes_outputs(mlp_run):
  workdir, results = mlp_run
  for key in ("test_accuracy", "test_loss", "train_accuracy", "num_params", "steps",
              "train_seconds", "model", "dataset", "seed"):
    assert key in results
  assert results["num_params"] == 101_770 and results["steps"] == 40
  assert results["test_count"] == 10_000  # the whole test split, none dropped by batching
  assert results["test_accuracy"] > 0.6  # 40 steps of batch 32 from chance (0.1)
  assert json.load(open(workdir / "results.json")) == results
  lines = metrics.read_jsonl(workdir / "metrics.jsonl")
  train_losses = [m["loss"] for m in lines if m["split"] == "train"]
  assert [m["step"] for m in lines if m["split"] == "train"] == [10, 20, 30, 40]
  assert train_losses[-1] < 0.75 * train_losses[0]
  assert json.load(open(workdir / "config.json"))["model"] == "mlp"
  # TensorBoard reads the event file back: the same scalars as metrics.jsonl.
  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(str(workdir / "tensorboard"))
  events.Reload()
  scalars = events.Scalars("train/loss")
  assert [e.step for e in scalars] == [10, 20, 30, 40]
  assert [e.value for e in scalars] == pytest.approx(train_losses, rel=1e-6)  # float32 in TB


def test_same_seed_same_numbers_other_seed_different(mlp_run, tmp_path):
  _, first = mlp_run
  again = train.train_and_evaluate(tiny_config("mlp", eval_train=True), str(tmp_path / "a"))
  for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss"):
    assert again[key] == first[key]
  other = train.train_and_evaluate(tiny_config("mlp", seed=1), str(tmp_path / "b"))
  assert other["test_loss"] != first["test_loss"]


def test_cnn_short_run(mnist, tmp_path):
  results = train.train_and_evaluate(tiny_config("cnn", num_train_steps=30), str(tmp_path))
  assert results["num_params"] == 34_826
  assert results["test_accuracy"] > 0.5


def test_nan_loss_stops_the_run(mnist, tmp_path):
  with pytest.raises(FloatingPointError, match=r"loss is nan at step \d+"):
    train.train_and_evaluate(tiny_config("mlp", learning_rate=1e30, optimizer="sgd"), str(tmp_path))


def test_cli_trains_with_overrides(mnist, tmp_path):
  workdir = tmp_path / "cli"
  proc = run_cli(["--config=configs/mnist_mlp.py", f"--workdir={workdir}",
                  "--config.num_train_steps=20", "--config.batch_size=64",
                  "--config.learning_rate=3e-3", "--config.mlp_hidden=(32,)",
                  "--config.parallelism=single", "--config.eval_train=False"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  results = json.load(open(workdir / "results.json"))
  assert results["steps"] == 20 and results["batch_size"] == 64
  assert results["num_params"] == 784 * 32 + 32 + 32 * 10 + 10
  config = json.load(open(workdir / "config.json"))
  assert config["learning_rate"] == 3e-3 and config["mlp_hidden"] == [32]
  assert "step 20/20" in proc.stderr and "steps/s" in proc.stderr and "ETA" in proc.stderr
  assert "compilation included" in proc.stderr  # the first call's time, outside the rates
  # A CPU run is quiet: no TPU probe, no TensorFlow start-up notices.
  for noise in ("Unable to initialize backend", "oneDNN", "absl::InitializeLog", "Traceback"):
    assert noise not in proc.stderr + proc.stdout, noise


def _error_lines(proc):
  return [l for l in proc.stderr.splitlines() if "error" in l.lower() and not l.startswith("W")]


@pytest.mark.parametrize("args, message", [
    (["--config=configs/mnist_cnn.py", "--config.no_such_field=1"], "no_such_field"),
    (["--config=configs/mnist_cnn.py", "--config.batch_size=lots"], "batch_size"),
    (["--config=configs/mnist_cnn.py"], "--workdir"),
    (["--workdir=WORKDIR"], "--config"),
    (["--config=configs/no_such_config.py"], "no_such_config"),
    (["--config=configs/mnist_cnn.py:bogus"], "unknown config variant 'bogus'"),
])
def test_bad_flags_exit_nonzero_with_one_clear_line(args, message, tmp_path):
  args = [a.replace("WORKDIR", str(tmp_path)) for a in args]
  if not any(a.startswith("--workdir") for a in args) and message != "--workdir":
    args.append(f"--workdir={tmp_path}")
  proc = run_cli(args)
  assert proc.returncode != 0
  assert message in proc.stderr
  assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("override, message", [
    ("--config.model=transformer", "unknown model 'transformer'"),
    ("--config.dataset=no_such_dataset", "unknown dataset 'no_such_dataset'"),
    ("--config.parallelism=magic", "unknown parallelism 'magic'"),
    ("--config.batch_size=100", "batch_size 100 must be a positive multiple of the 8 devices"),
    ("--config.cnn_features=abc", "cnn_features must be a tuple of positive ints"),
])
def test_bad_config_values_exit_nonzero_with_one_clear_line(override, message, tmp_path):
  proc = run_cli(["--config=configs/mnist_cnn.py", f"--workdir={tmp_path}/w", override])
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines  # one line only
  assert not (tmp_path / "w").exists()  # the workdir it created is gone again


def test_help_names_the_variants_and_how_to_list_the_fields():
  proc = run_cli(["--help"])  # absl's help exits 1
  text = " ".join((proc.stdout + proc.stderr).split())
  assert "debug, runlocal, gpu, tpu" in text and "--show_config" in text
  assert "(default: 'None')" not in text
  proc = run_cli(["--config=configs/mnist_cnn.py:gpu", "--show_config"])
  assert proc.returncode == 0, proc.stderr
  fields = {line.split("=", 1)[0].strip(): line.split("=", 1)[1].split("  #")[0].strip()
            for line in proc.stdout.splitlines() if "=" in line}
  assert fields["batch_size"] == "512" and fields["model"] == "'cnn'" and "stall_timeout" in fields


def test_show_config_describes_every_field_without_a_config():
  from configs import common
  proc = run_cli(["--show_config"])
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert [l.split()[0] for l in lines] == list(common.FIELDS)  # every field, once, in order
  line = next(l for l in lines if l.startswith("random_labels "))
  assert "0.0" in line and "fraction of training labels" in line and "[in [0, 1]]" in line


@pytest.mark.parametrize("override, message", [
    ("num_epochs=-3", "num_epochs must be an int > 0; got -3"),
    ("num_train_steps=-5", "num_train_steps must be -1 (use num_epochs) or > 0; got -5"),
    ("random_labels=1.5", "random_labels must be in [0, 1]; got 1.5"),
    ("learning_rate=0.0", "learning_rate must be > 0; got 0.0"),
    ("conv_impl='fft'", "conv_impl must be one of auto, nn.Conv"),
    ("lr_schedule='linear'", "lr_schedule must be one of constant, cosine"),
])
def test_every_field_is_checked_against_its_valid_values(override, message):
  from configs import common, mnist_cnn
  common.check(mnist_cnn.get_config())  # the shipped configs are valid
  c = mnist_cnn.get_config()
  name, value = override.split("=", 1)
  c[name] = eval(value)
  with pytest.raises(ValueError, match=re.escape(message)):
    common.check(c)


def test_an_unknown_field_is_one_clean_line(tmp_path):
  proc = run_cli(["--config=configs/mnist_cnn.py", "--config.lerning_rate=1",
                  f"--workdir={tmp_path}/w"])
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "error: unknown config field 'lerning_rate' (Did you mean \"learning_rate\" instead of "
      "\"lerning_rate\"?); --show_config lists them"]


def test_a_model_that_does_not_fit_the_data_is_one_line(tmp_path):
  proc = run_cli(["--config=configs/mnist_cnn.py", "--config.dataset=mnist1d",
                  f"--workdir={tmp_path}/w"])
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      "error: model 'cnn' does not fit mnist1d's 1x40x1 inputs (a sequence: model 'cnn1d'"), lines
  assert not (tmp_path / "w").exists()


def test_sourcing_env_sh_leaves_the_shell_options_alone():
  proc = subprocess.run(["bash", "-c", 'source scripts/env.sh >/dev/null 2>&1; echo "$-"; '
                         'set -o | grep -E "^(errexit|nounset|pipefail) " | tr -s " \t" " "'],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  flags, *options = proc.stdout.splitlines()
  assert "e" not in flags and "u" not in flags
  assert sorted(options) == ["errexit off", "nounset off", "pipefail off"], options


def test_workdir_that_is_a_file_is_refused_and_kept(tmp_path):
  path = tmp_path / "precious.txt"
  path.write_text("user data")
  proc = run_cli(["--config=configs/mnist_mlp.py", f"--workdir={path}"])
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == f"error: workdir {path} exists and is not a directory"
  assert path.read_text() == "user data"


def test_unwritable_workdir_is_refused(tmp_path):
  proc = run_cli(["--config=configs/mnist_mlp.py", "--workdir=/proc/no_such_dir/run"])
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: workdir /proc/no_such_dir/run is not writable")


def test_debug_variant_logs_compiles_and_stops_on_nan_with_the_step(mnist, tmp_path):
  proc = run_cli(["--config=configs/mnist_mlp.py:debug", f"--workdir={tmp_path}",
                  "--config.learning_rate=1e30", "--config.optimizer=sgd",
                  "--config.parallelism=single"])
  assert proc.returncode == 3
  assert "Compiling" in proc.stderr  # jax_log_compiles: every (re)compilation is logged
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: training diverged: loss is nan at step 2"), last


def test_eval_reads_the_runs_own_config(mlp_run):
  workdir, results = mlp_run
  proc = run_cli(["--mode=eval", f"--workdir={workdir}"])  # no --config: WORKDIR/config.json
  assert proc.returncode == 0, proc.stderr[-2000:]
  scored = json.loads(proc.stdout.strip().splitlines()[-1])
  assert scored["test_loss"] == results["test_loss"] and scored["step"] == results["steps"]


def test_tensorboard_reads_the_runs_hparams(mlp_run):
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.plugins.hparams import metadata, plugin_data_pb2
  workdir, _ = mlp_run
  events = event_accumulator.EventAccumulator(str(workdir / "tensorboard"))
  events.Reload()
  content = events.PluginTagToContent(metadata.PLUGIN_NAME)
  assert metadata.SESSION_START_INFO_TAG in content
  start = plugin_data_pb2.HParamsPluginData.FromString(
      content[metadata.SESSION_START_INFO_TAG]).session_start_info
  config = json.load(open(workdir / "config.json"))
  assert start.hparams["model"].string_value == "mlp"
  assert start.hparams["learning_rate"].number_value == config["learning_rate"]
  assert start.hparams["eval_train"].bool_value is True
  assert set(start.hparams) == set(config)  # every field
  assert "test/accuracy" in events.Tags()["scalars"]  # the metrics the dashboard shows beside them


def _wandb_records(path):
  """The records of a W&B run file (a LevelDB-style log of protobuf Records after a 7-byte
  header), read with wandb's own protos."""
  from wandb.proto import wandb_internal_pb2
  data = open(path, "rb").read()
  assert data[:4] == b":W&B"
  pos, block, records, pending = 7, 32768, [], b""
  while pos + 7 <= len(data):
    if block - pos % block < 7:  # a block's tail too short for a header is padding
      pos += block - pos % block
      continue
    length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
    pending += data[pos + 7:pos + 7 + length]
    pos += 7 + length
    if kind in (1, 4):  # a whole record, or the last piece of one
      records.append(wandb_internal_pb2.Record.FromString(pending))
      pending = b""
  return records


def test_a_run_logs_to_weights_and_biases_offline(mnist, tmp_path, monkeypatch):
  pytest.importorskip("wandb", reason="pip install -e .[test] brings wandb")
  monkeypatch.setenv("WANDB_MODE", "offline")  # the library writes its run files locally
  monkeypatch.setenv("WANDB_SILENT", "true")
  workdir = tmp_path / "wb"
  results = train.train_and_evaluate(tiny_config("mlp", wandb_project="dense-vs-conv-test"),
                                     str(workdir))
  runs = [d for d in os.listdir(workdir / "wandb") if d.startswith("offline-run-")]
  assert len(runs) == 1, os.listdir(workdir / "wandb")
  path = next((workdir / "wandb" / runs[0]).glob("*.wandb"))
  records = _wandb_records(path)
  kind = lambda r: r.WhichOneof("record_type")
  run = next(r.run for r in records if kind(r) == "run")
  config = {u.key: json.loads(u.value_json) for u in run.config.update}
  assert config["model"] == "mlp" and config["learning_rate"] == 1e-3
  history = [{"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
             for r in records if kind(r) == "history"]
  assert [h["_step"] for h in history if "train/loss" in h] == [10, 20, 30, 40]
  assert history[-1]["test/accuracy"] == results["test_accuracy"]
  summary = {u.key: u.value_json for r in records if kind(r) == "summary" for u in r.summary.update}
  assert json.loads(summary["test_accuracy"]) == results["test_accuracy"]
