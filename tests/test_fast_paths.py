"""The fast paths compute what the plain path computes: fused (unrolled) multi-step calls,
Eigen's convolution kernels instead of YNNPACK's, and the straight-line threefry hash."""
import subprocess
import sys

import jax
import numpy as np
import optax

from conftest import ROOT, tiny_config
from research import experiment, models, parallel, train


def _params(workdir):
  return experiment.load_model(str(workdir))[1]


# The fused program is the same math as one step per call, but XLA may fuse and order its sums
# differently, so they agree to float32 rounding. SGD with momentum is linear in the gradients,
# so that rounding (~1e-7 of a gradient per step) stays ~1e-6 in the weights after 30 steps;
# see tests/test_parallel.py for why Adam is not used for this comparison.
SGD = dict(optimizer="sgd", learning_rate=0.05)


def test_fused_steps_equal_one_step_per_call(mnist, tmp_path):
  # 12 steps as 12 calls of 1 step, and as calls of 5 fused steps (5, 5, then a short 2).
  one = train.train_and_evaluate(tiny_config("cnn", num_train_steps=12, steps_per_call=1,
                                             log_every_steps=12, **SGD), str(tmp_path / "one"))
  fused = train.train_and_evaluate(tiny_config("cnn", num_train_steps=12, steps_per_call=5,
                                               log_every_steps=12, **SGD), str(tmp_path / "fused"))
  for a, b in zip(jax.tree.leaves(_params(tmp_path / "one")), jax.tree.leaves(_params(tmp_path / "fused"))):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
  assert abs(one["test_loss"] - fused["test_loss"]) < 1e-4
  assert abs(one["test_accuracy"] - fused["test_accuracy"]) <= 2e-4


def _conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_cpu_steps_compile_without_ynnpack():
  # The option really reaches XLA: with it the compiled convolution is no YNNPACK fusion.
  x, w = np.ones((8, 13, 13, 32), np.float32), np.ones((3, 3, 32, 64), np.float32)
  options = parallel.compiler_options()
  assert options == {"xla_cpu_experimental_ynn_fusion_type": ""}
  assert parallel.compiler_options(ynnpack=True) is None
  with_ynn = jax.jit(_conv).lower(x, w).compile().as_text()
  without = jax.jit(_conv, compiler_options=options).lower(x, w).compile().as_text()
  assert "__ynn_fusion" in with_ynn and "__ynn_fusion" not in without
  np.testing.assert_allclose(jax.jit(_conv, compiler_options=options)(x, w), _conv(x, w), rtol=1e-6)


def _loss_and_grads(model, params, images, labels, options=None):
  def loss(p):
    logits = model.apply({"params": p}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return jax.jit(jax.value_and_grad(loss), compiler_options=options)(params)


def test_eigen_and_ynnpack_kernels_compute_the_same_cnn_gradients(mnist):
  # Two kernel libraries sum in different orders, so they agree only to float32 rounding, and
  # after many Adam steps that rounding grows by an amount that depends on the CPU (Adam's
  # first steps move a weight by ~lr*sign(grad), so a grad near zero can flip). What is
  # guaranteed is one step's loss and gradients: each kernel's float32 values must match a
  # float64 computation of the same CNN on the same batch. The gradients' longest sums have
  # ~4e3 terms (conv2's weight gradient: batch 32 x 11x11 positions); float32 rounding of such
  # sums is ~sqrt(n)*6e-8 ~ 4e-6 of the summed magnitudes, so 1e-4 of each leaf's largest
  # gradient leaves room for cancellation and the layers the error passes through, while a
  # wrong kernel (a wrong stride, layout or transpose) is off by O(1).
  config = tiny_config("cnn")
  model = models.create_model(config, 10)
  params = experiment.create_train_state(config, model, (28, 28, 1), 1).params
  images = mnist.train_images[:32].astype(np.float32) / 255.0
  labels = mnist.train_labels[:32]
  eigen = _loss_and_grads(model, params, images, labels, parallel.compiler_options())
  ynn = _loss_and_grads(model, params, images, labels, parallel.compiler_options(ynnpack=True))
  with jax.enable_x64(True):
    to64 = lambda t: jax.tree.map(lambda x: np.asarray(x, np.float64), t)
    model64 = model.clone(dtype=np.float64)  # the same CNN computing in float64
    ref_loss, ref_grads = _loss_and_grads(model64, to64(params), to64(images), labels)
    ref_loss, ref_grads = float(ref_loss), jax.tree.map(np.asarray, ref_grads)
  assert jax.tree.leaves(ref_grads)[0].dtype == np.float64
  for name, (loss, grads) in (("eigen", eigen), ("ynnpack", ynn)):
    assert abs(float(loss) - ref_loss) <= 1e-5 * abs(ref_loss), name
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
      np.testing.assert_allclose(g, r, rtol=0, atol=1e-4 * np.abs(r).max(), err_msg=name)


# Random draws of every kind the runs make: whether threefry lowers to a loop here, and a digest
# of the draws' bits.
_DRAWS = r"""
import hashlib, jax, numpy as np
k = jax.random.PRNGKey(7)
loop = "while" in jax.jit(lambda k: jax.random.bits(k, (8,))).lower(k).as_text()
draws = [jax.random.normal(k, (3, 1001)), jax.random.truncated_normal(k, -2.0, 2.0, (5, 7)),
         jax.random.permutation(jax.random.fold_in(k, 3), 60000), jax.random.bits(k, (777,)),
         jax.random.key_data(jax.random.split(k, 5)), jax.random.randint(k, (9,), -6, 7),
         jax.random.uniform(k, (11,))]
print(loop, hashlib.sha256(b"".join(np.asarray(d).tobytes() for d in draws)).hexdigest())
"""


def _draws(imports: str) -> tuple[str, str]:
  proc = subprocess.run([sys.executable, "-c", imports + _DRAWS], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tuple(proc.stdout.split())


def test_straight_line_threefry_gives_jaxs_own_bits():
  # Importing research lowers threefry for CPU as straight-line code (XLA:CPU compiles it several
  # times faster than JAX's CPU loop; scripts/profile_compile.py): the draws must be the bits of
  # JAX's default, taken from a process that does not import research.
  _, default_bits = _draws("")
  loop, bits = _draws("import research; ")
  assert loop == "False", "threefry still lowers to a loop on CPU"
  assert bits == default_bits
