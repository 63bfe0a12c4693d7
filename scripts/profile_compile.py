"""How long XLA:CPU takes to compile JAX's random draws, with the threefry hash as JAX lowers it
for CPU by default (a loop of 5 rounds) and as importing research lowers it (straight-line
code, JAX's lowering for other backends); a profile, not a test.

  python scripts/profile_compile.py [--repeats=5]

Per repeat and per form, interleaved so that a change in the machine's speed hits both alike:
the compile of jax.random.normal of a fresh shape (no cache can answer it), of the seed CNN's
and the seed MLP's init (models.create_model), and the draw's bits. Prints the medians, the
ratio loop / straight-line, and whether the two forms gave the same bits.
"""
import hashlib
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from configs import mnist_cnn, mnist_mlp
from research import models

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 5, "Compiles per form and program.")

try:  # JAX's private lowering rules (research.machine.unroll_threefry_on_cpu registers one)
  from jax._src.interpreters import mlir
  from jax._src.random import threefry2x32
  FORMS = {"loop (JAX's CPU default)": threefry2x32._threefry2x32_cpu_lowering_rule,
           "straight-line (research)": threefry2x32._threefry2x32_lowering_rule}
except (ImportError, AttributeError):
  FORMS = None


def _compile_seconds(fn, *args) -> float:
  start = time.perf_counter()
  jax.jit(fn).lower(*args).compile()
  return time.perf_counter() - start


def _programs(repeat: int):
  """(name, fn, args) of the programs timed in `repeat`; shapes differ between repeats."""
  key = jax.random.PRNGKey(0)
  shape = (1600 + repeat, 10)
  out = [("jax.random.normal", lambda k: jax.random.normal(k, shape), (key,))]
  for name, module in (("cnn", mnist_cnn), ("mlp", mnist_mlp)):
    model = models.create_model(module.get_config(), 10)
    image = np.zeros((1, 28, 28 + repeat, 1), np.float32)
    out.append((f"{name} init", lambda k, x, model=model: model.init(k, x), (key, image)))
  return out


def main(argv):
  del argv
  if FORMS is None:
    raise SystemExit("error: this jax has no straight-line threefry lowering to compare")
  seconds, digests = {}, {}
  for repeat in range(FLAGS.repeats):
    for form, rule in FORMS.items():
      mlir.register_lowering(threefry2x32.threefry2x32_p, rule, platform="cpu")
      for name, fn, args in _programs(repeat):
        seconds.setdefault((name, form), []).append(_compile_seconds(fn, *args))
      draw = jax.jit(lambda k: jax.random.normal(k, (999,)))  # a new function: compiled anew
      digests.setdefault(form, []).append(hashlib.sha256(
          np.asarray(draw(jax.random.PRNGKey(repeat))).tobytes()).hexdigest())
  loop, line = FORMS
  for name in dict.fromkeys(name for name, _ in seconds):
    a, b = (statistics.median(seconds[name, form]) for form in (loop, line))
    print(f"{name:18s} compile: {loop} {a:.2f} s, {line} {b:.2f} s, ratio {a / b:.1f}x")
  print("same bits:", digests[loop] == digests[line])


if __name__ == "__main__":
  app.run(main)
