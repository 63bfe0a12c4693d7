"""What a run writes into its workdir (process 0 only): config.json, metrics.jsonl,
TensorBoard event files and results.json."""
import contextlib
import errno
import hashlib
import json
import os
import socket
import time

from research import UserError


class MetricWriter:
  """Writes a run's files (process 0: `enabled`); with `wandb_project`, also logs the run to
  Weights & Biases (the optional `wandb` extra; WANDB_MODE=offline keeps it on disk)."""

  def __init__(self, workdir: str, enabled: bool = True, wandb_project: str = ""):
    self.workdir = workdir
    self.enabled = enabled
    self.wandb_project = wandb_project if enabled else ""
    self._wandb = None
    self._tb = None
    self._jsonl = None
    if enabled:
      with _clear_write_errors(workdir):
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def _tensorboard(self):
    if self._tb is None:
      self._tb = EventFile(os.path.join(self.workdir, "tensorboard"))
    return self._tb

  def drop_after(self, step: int, redo_final: bool = False) -> None:
    """Removes metrics.jsonl lines past `step` (and its test line when `redo_final`): a run
    resumed from the checkpoint at `step` writes them again, so none is repeated or out of order."""
    if not self.enabled:
      return
    path = os.path.join(self.workdir, "metrics.jsonl")
    with open(path) as f:
      lines = [line for line in f if line.strip()]
    keep = []
    for line in lines:
      try:
        record = json.loads(line)
      except ValueError:  # a line cut short by a kill
        continue
      if record["step"] < step or (record["step"] == step and not (
          redo_final and record.get("split") == "test")):
        keep.append(line if line.endswith("\n") else line + "\n")
    if len(keep) != len(lines):
      self._jsonl.close()
      _atomic_write(path, "".join(keep).rstrip("\n"))
      self._jsonl = open(path, "a")

  def write_config(self, config) -> None:
    """config.json, and the config's fields as the run's TensorBoard hparams (so a sweep's
    folder of runs opens in the HParams dashboard, one entry per run)."""
    if self.enabled:
      _atomic_write(os.path.join(self.workdir, "config.json"), config.to_json_best_effort(indent=2))
      with _clear_write_errors(self.workdir):
        self._tensorboard().hparams(json.loads(config.to_json_best_effort()),
                                    group=os.path.basename(os.path.normpath(self.workdir)))
        self._tb.flush()
      if self.wandb_project:
        self._start_wandb(json.loads(config.to_json_best_effort()))

  def _start_wandb(self, config: dict) -> None:
    try:
      import wandb
    except ImportError:
      raise UserError("config.wandb_project needs the wandb package: pip install -e '.[wandb]'") from None
    name = os.path.basename(os.path.normpath(self.workdir))
    # One W&B run per workdir, its id from the workdir's path: a resumed run continues it.
    run_id = name[:40] + "-" + hashlib.sha256(os.path.abspath(self.workdir).encode()).hexdigest()[:8]
    self._wandb = wandb.init(project=self.wandb_project, name=name, id=run_id, resume="allow",
                             dir=self.workdir, config=config)

  def write(self, split: str, step: int, values: dict) -> None:
    """One JSON line {"split", "step", "time", **values} and one scalar per value."""
    if not self.enabled:
      return
    with _clear_write_errors(self.workdir):
      self._jsonl.write(json.dumps({"split": split, "step": int(step), "time": time.time(),
                                    **{k: float(v) for k, v in values.items()}}) + "\n")
      self._jsonl.flush()
      tb = self._tensorboard()
      for k, v in values.items():
        tb.scalar(f"{split}/{k}", float(v), int(step))
      tb.flush()
    if self._wandb is not None:
      self._wandb.log({f"{split}/{k}": float(v) for k, v in values.items()}, step=int(step))

  def write_json(self, name: str, obj: dict, force: bool = False) -> None:
    """Writes WORKDIR/name atomically (process 0, or any process with force=True)."""
    if self.enabled or force:
      _atomic_write(os.path.join(self.workdir, name), json.dumps(obj, indent=2))
    if self._wandb is not None and name == "results.json":
      self._wandb.summary.update(obj)

  def close(self) -> None:
    if self._wandb is not None:
      self._wandb.finish()
      self._wandb = None
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.flush()
      self._tb.close()
      self._tb = None


class EventFile:
  """TensorBoard scalars in an event file, written without TensorFlow.

  flax.metrics.tensorboard imports TensorFlow (~6 s of every run's start on two cores) to do
  what the tensorboard package's protos and record writer do alone: one Event proto per scalar,
  framed as a TFRecord.
  """

  def __init__(self, logdir: str):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter
    self._event, self._summary = event_pb2.Event, summary_pb2.Summary
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}"
    self._records = RecordWriter(open(os.path.join(logdir, name), "wb"))
    self._write(self._event(wall_time=time.time(), file_version="brain.Event:2"))

  def _write(self, event) -> None:
    self._records.write(event.SerializeToString())

  def scalar(self, tag: str, value: float, step: int) -> None:
    self._write(self._event(wall_time=time.time(), step=int(step), summary=self._summary(
        value=[self._summary.Value(tag=tag, simple_value=float(value))])))

  def hparams(self, values: dict, group: str) -> None:
    """The run's hyperparameters for TensorBoard's HParams dashboard (an HParams start record whose
    metrics are the run's scalars): numbers, strings and bools as they are, others as text."""
    from google.protobuf import struct_pb2
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2
    start = plugin_data_pb2.SessionStartInfo(group_name=group, start_time_secs=time.time())
    for name, value in sorted(values.items()):
      if isinstance(value, bool):
        start.hparams[name].CopyFrom(struct_pb2.Value(bool_value=value))
      elif isinstance(value, (int, float)):
        start.hparams[name].CopyFrom(struct_pb2.Value(number_value=float(value)))
      else:
        start.hparams[name].CopyFrom(struct_pb2.Value(string_value=str(value)))
    data = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION,
                                             session_start_info=start)
    summary_metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()))
    self._write(self._event(wall_time=time.time(), step=0, summary=self._summary(value=[
        self._summary.Value(tag=metadata.SESSION_START_INFO_TAG, metadata=summary_metadata,
                            tensor=metadata.NULL_TENSOR)])))

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    self._records.close()


@contextlib.contextmanager
def _clear_write_errors(where: str):
  """A full disk, a read-only or forbidden folder: one UserError line, not a traceback."""
  try:
    yield
  except OSError as e:
    if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
      raise
    raise UserError(f"cannot write the run's files to {where}: {os.strerror(e.errno)}") from None


def _atomic_write(path: str, text: str) -> None:
  """Writes `path` whole or not at all (a failed write leaves no temporary file behind)."""
  tmp = f"{path}.tmp.{os.getpid()}"
  with _clear_write_errors(os.path.dirname(path)):
    try:
      with open(tmp, "w") as f:
        f.write(text + "\n")
      os.replace(tmp, path)
    except BaseException:
      with contextlib.suppress(OSError):
        os.remove(tmp)
      raise


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
