"""β-LASSO (Neyshabur 2020, "Towards Learning Convolutions from Scratch", Algorithm 1) in optax's
style: `beta_lasso(learning_rate, lam, beta, momentum)` is a GradientTransformation.

Each step, for a parameter θ that the mask selects (by default every `kernel`: the weight matrices
of Dense and conv layers, not the biases):

    m ← μ·m + g                              momentum on the gradient part (optax.trace)
    θ' ← θ − η·(m + λ·sign(θ))               a gradient step with an L1 term
    θ' ← θ' · 1{|θ'| ≥ β·λ}                  weights below the threshold β·λ are set to zero

and for the other parameters plain SGD with momentum, θ' = θ − η·m. The threshold is β·λ, not
scaled by η, as in the paper's Algorithm 1. The thresholding sets parameters rather than adding to
them, so the update returned is θ' − θ computed so that `optax.apply_updates(θ, update)` gives θ'
exactly: −η·(m + λ·sign θ) where the weight survives (θ + that is the step's value), and −θ where
it is zeroed (θ + (−θ) == 0 exactly). Elementwise, deterministic, and its state is
optax.trace's momentum plus a step count (checkpointed with the train state like Adam's).

Assumptions where the paper is not explicit (no internet here; from its text as remembered):
the L1 term is not passed through momentum (only the loss gradient is, "momentum on the gradient
part"); sign(0) = 0, so a weight that is zero stays zero unless its gradient step lifts it over
the threshold; biases are not penalised.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


def kernels_only(params):
  """The default mask: True for every leaf whose name is `kernel` (Dense and conv weights)."""
  def is_kernel(path, _):
    last = path[-1] if path else None
    return getattr(last, "key", getattr(last, "name", None)) == "kernel"
  return jax.tree_util.tree_map_with_path(is_kernel, params)


class LassoStepState(NamedTuple):
  count: jax.Array  # steps taken (the learning-rate schedule's argument)


def lasso_step(learning_rate, lam: float, beta: float,
               mask: Callable | None = None) -> optax.GradientTransformation:
  """The second half of β-LASSO: incoming updates are the (momentum) gradient m; returns
  θ' − θ as described in the module docstring. `learning_rate`: a float or an optax schedule."""
  mask = mask or kernels_only
  lam, threshold = float(lam), float(beta) * float(lam)

  def init_fn(params):
    del params
    return LassoStepState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("beta_lasso needs the params (optax's update(grads, state, params))")
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate

    def one(m, p, selected):
      step = -lr * m
      if not selected:
        return step.astype(p.dtype)
      step = (-lr * (m + lam * jnp.sign(p))).astype(p.dtype)
      keep = jnp.abs(p + step) >= threshold
      return jnp.where(keep, step, -p)

    selected = mask(params)
    new = jax.tree.map(one, updates, params, selected)
    return new, LassoStepState(count=optax.safe_int32_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def beta_lasso(learning_rate, lam: float, beta: float, momentum: float = 0.9,
               mask: Callable | None = None) -> optax.GradientTransformation:
  """β-LASSO with heavy-ball momentum μ on the loss gradient (μ = 0: none)."""
  if lam < 0 or beta < 0:
    raise ValueError(f"beta_lasso needs lam >= 0 and beta >= 0; got {lam}, {beta}")
  parts = [optax.trace(decay=momentum)] if momentum else []
  return optax.chain(*parts, lasso_step(learning_rate, lam, beta, mask))


def sparsity(params, mask: Callable | None = None) -> dict:
  """{layer: fraction of its kernel's weights that are exactly zero} for the selected leaves."""
  selected = (mask or kernels_only)(params)
  out = {}
  for (path, leaf), (_, sel) in zip(jax.tree_util.tree_leaves_with_path(params),
                                    jax.tree_util.tree_leaves_with_path(selected)):
    if sel:
      name = "/".join(str(getattr(k, "key", k)) for k in path[:-1])
      out[name] = float(np.mean(np.asarray(leaf) == 0))
  return out
