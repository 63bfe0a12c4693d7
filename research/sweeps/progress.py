"""What a sweep shows while it runs: a line per finished run and a live status line."""
import sys
import time


def duration(seconds: float) -> str:
  """'45s', '12m05s' or '3h07m'."""
  seconds = int(round(seconds))
  if seconds < 120:
    return f"{seconds}s"
  if seconds < 7200:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
  """One line per finished run, and a live status line (done / running / failed / pending, ETA):
  redrawn in place on a terminal, printed every `every_s` seconds otherwise."""

  def __init__(self, total: int, log=print, stream=None, every_s: float = 60.0):
    self.total, self.log = total, log
    self.stream = stream if stream is not None else sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.every_s = every_s
    self.done = self.failed = self.running = 0
    self.pending = total
    self.slots = 1
    self.durations = []
    self._drawn = False
    self._last = time.time()

  def status(self) -> str:
    eta = "?"
    if self.durations and (self.running or self.pending):
      mean = sum(self.durations) / len(self.durations)
      eta = duration(mean * (self.running + self.pending) / max(self.slots, 1))
    elif not (self.running or self.pending):
      eta = "0s"
    return (f"runs: {self.done} done, {self.running} running, {self.failed} failed, "
            f"{self.pending} pending of {self.total}; ETA {eta}")

  def _clear(self):
    if self.tty and self._drawn:
      self.stream.write("\r\033[K")
      self.stream.flush()
      self._drawn = False

  def _draw(self):
    if self.tty:
      self.stream.write("\r\033[K" + self.status())
      self.stream.flush()
      self._drawn = True
    elif time.time() - self._last >= self.every_s:
      self.log(self.status())
      self._last = time.time()

  def update(self, running: int, pending: int, slots: int | None = None) -> None:
    self.running, self.pending = running, pending
    self.slots = slots or self.slots
    self._draw()

  def finished(self, run, outcome: dict) -> None:
    if outcome["status"] == "failed":
      self.failed += 1
    else:
      self.done += 1
    if outcome["status"] in ("trained", "resumed"):
      self.durations.append(outcome.get("seconds") or 0.0)
    r = outcome.get("results") or {}
    if outcome["status"] == "failed":
      detail = f"error: {outcome.get('error')}"
    else:
      detail = f"test {r.get('test_accuracy', float('nan')):.4f}"
      if r.get("train_accuracy") is not None:
        detail += f" train {r['train_accuracy']:.4f}"
      detail += f"  {r.get('steps')} steps  {outcome.get('seconds') or 0.0:.0f}s"
    self._clear()
    self.log(f"[{self.done + self.failed}/{self.total}] {run.model:4s} {run.condition:22s} seed "
             f"{run.seed}: {outcome['status']:7s} {detail}  {run.name}")
    self._draw()

  def close(self) -> None:
    self._clear()
    self.log(self.status())
