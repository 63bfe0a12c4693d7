"""absl flag parsing shared by the entry points (research.main, research.preflight).

A bad flag, config file or `--config.FIELD` override becomes one `error: ...` line on stderr and
exit status 2, not a traceback.
"""
import sys

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
    message = f"unknown config field {str(e).strip(chr(34))} (`python -m research.main --config=FILE --show_config` lists them)"
  except (OSError, ValueError, TypeError, SyntaxError, ImportError) as e:  # config file problems
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    message = f"cannot load --config: {' '.join(lines[-2:]) if lines else type(e).__name__}"
  fail(message)


def fail(message: str):
  """One `error: ...` line on stderr, exit status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)
