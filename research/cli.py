"""What the entry points share: absl flag parsing, the one-line error exit, a quiet log.

A bad flag, config file or `--config.FIELD` override becomes one `error: ...` line on stderr and
exit status 2, not a traceback; `fail` is also how the entry points end on any other error.
"""
import ast
import os
import sys
import threading

from absl import flags


def parse_flags(argv):
  """absl's flag parsing, with one error line (not a traceback) for a bad config or override."""
  FLAGS = flags.FLAGS
  try:
    argv = FLAGS(argv)
    if FLAGS["config"].present or FLAGS.config is not None:
      FLAGS.config.keys()  # ml_collections defers a config file's load error until first use
    return argv
  except flags.Error as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    message = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
  except (AttributeError, KeyError) as e:  # ml_collections: an override of an unknown field
    text = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    while len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # a repr, maybe nested
      try:
        text = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        break
    lines = [l.strip().strip("'\"") for l in text.splitlines() if l.strip()]
    message = f"unknown config field {lines[0] if lines else text!r}"
    if len(lines) > 1:
      message += f" ({lines[-1].rstrip('?')}?)"
    message += "; --show_config lists them"
  except (OSError, ValueError, TypeError, SyntaxError, ImportError) as e:  # config file problems
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    message = f"cannot load --config: {' '.join(lines[-2:]) if lines else type(e).__name__}"
  fail(message)


def fail(message: str, code: int = 2):
  """`error: MESSAGE` as the last line on stderr, then exit with `code` at once.

  Background threads can still be failing when an error reaches here (orbax's and
  tensorstore's writers after a checkpoint ran out of disk), so fd 2 is pointed at /dev/null
  first and the line goes to a copy of the real one: nothing they print can follow it.
  os._exit, not sys.exit: a failed save can leave orbax's signalling threads (not daemons)
  waiting forever, and the interpreter's exit would join them; in a multi-process run,
  jax.distributed's exit barrier would wait for peers. What the run wrote is already flushed
  (metrics after every line, checkpoints only once committed).
  """
  sys.stdout.flush()
  real_stderr = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  # A thread cut off mid-write (a long traceback goes out in chunks) may have left a partial
  # line: where other Python threads run, the error line starts on a fresh one.
  fresh = "\n" if threading.active_count() > 1 else ""
  os.write(real_stderr, f"{fresh}error: {message}\n".encode())
  os._exit(code)


class QuietLibraries:
  """A logging filter: libraries' INFO chatter stays out of a run's log (their warnings pass),
  and so do two messages that are noise here: JAX saying that a CPU machine has no TPU, and
  urllib3's retries of a download that the run's one error line reports if it finally fails."""

  def filter(self, record):
    text = record.getMessage()
    if "/urllib3/" in record.pathname and "Retrying" in text:
      return False
    if "Unable to initialize backend" in text or (
        "Variant folder" in text and "dataset_info.json" in text):  # TFDS, before it prepares
      return False
    noisy = any(part in record.pathname for part in ("/orbax/", "/tensorflow", "/etils/", "/jax/"))
    return record.levelno >= 30 or not noisy
