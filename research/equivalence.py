"""Exact Dense <-> Conv equivalence, both ways.

* `conv_to_dense(kernel, bias, input_shape, strides, padding, dilation)`: the matrix W
  [H*W*C, Ho*Wo*F] and bias [Ho*Wo*F] with `x.reshape(N, -1) @ W + b` equal to the convolution
  (flattened in (row, column, feature) order, as `y.reshape(N, -1)`). W is built by placing the
  kernel's taps at their input positions, not by probing the layer: each row of W is one input
  pixel-channel, each column one output position-feature, and most entries are zero.
  `conv_local_to_dense` does the same for an unshared (locally connected) kernel.
* `dense_to_conv(kernel, bias, input_shape)`: a Dense layer on the flattened input as a Conv
  whose kernel covers the whole input (H x W, VALID padding): output [N, 1, 1, F].
* `cnn_to_fcn(model, params, input_shape)`: a whole CNN (research.models.CNN, conv or locally
  connected) as its equivalent fully connected network (eFCN, d'Ascoli et al. 2019): every conv
  layer becomes the Dense matrix above, ReLU, pooling and reshapes stay. Returns the eFCN model
  (the same CNN module with `block=models.DENSE`, registered as `fcn`) and its params.
* `project_local(W, ...)`, `project_conv(W, ...)`: the orthogonal projections of a Dense matrix
  onto the matrices of a locally connected layer (zeros outside each output's receptive field)
  and of a conv layer (the same, with weights tied across positions): conv ⊂ local ⊂ dense.
  `subspace_fractions` gives the share of W's norm outside each.

Parameter counts are what the seeds compare: the conv's 3*3*1*32 + 32 = 320 parameters become
a 784 x 21,632 dense matrix with the same map (`dense_equivalent_size`).
"""
from typing import Sequence

import jax
import numpy as np

Padding = str | Sequence[tuple[int, int]]


def _pairs(v, n=2):
  return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def resolve_padding(padding: Padding, input_hw, kernel_hw, strides, dilation):
  """((top, bottom), (left, right)) for 'VALID', 'SAME' (lax's rule) or explicit pairs."""
  if isinstance(padding, str):
    if padding.upper() not in ("VALID", "SAME"):
      raise ValueError(f"padding {padding!r}: use 'VALID', 'SAME' or ((top, bottom), (left, right))")
    eff = [(k - 1) * d + 1 for k, d in zip(kernel_hw, dilation)]
    return tuple(jax.lax.padtype_to_pads(tuple(input_hw), tuple(eff), tuple(strides),
                                         padding.upper()))
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def conv_output_hw(input_hw, kernel_hw, strides, pads, dilation):
  out = []
  for n, k, s, (lo, hi), d in zip(input_hw, kernel_hw, strides, pads, dilation):
    eff = (k - 1) * d + 1
    out.append(max((n + lo + hi - eff) // s + 1, 0))
  return tuple(out)


def _taps(input_hw, kernel_hw, strides, pads, dilation):
  """For every output position and kernel tap: the input position it reads (or -1: padding).

  Returns (out_hw, in_index[Ho*Wo, kh*kw]) with in_index the flat input pixel (y*W + x).
  """
  (h, w), (kh, kw) = input_hw, kernel_hw
  ho, wo = conv_output_hw(input_hw, kernel_hw, strides, pads, dilation)
  oy, ox = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")  # [Ho, Wo]
  ty, tx = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")  # [kh, kw]
  iy = oy.reshape(-1, 1) * strides[0] - pads[0][0] + ty.reshape(1, -1) * dilation[0]
  ix = ox.reshape(-1, 1) * strides[1] - pads[1][0] + tx.reshape(1, -1) * dilation[1]
  inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
  return (ho, wo), np.where(inside, iy * w + ix, -1)


def _place(taps_kernel, in_index, num_pixels, channels):
  """W [P*C, O*F] from per-(output, tap) kernels taps_kernel [O, T, C, F] and in_index [O, T]."""
  o, t, c, f = taps_kernel.shape
  w = np.zeros((num_pixels, c, o, f), taps_kernel.dtype)
  out_pos, tap = np.nonzero(in_index >= 0)
  # Distinct taps of one output position read distinct pixels (stride/dilation >= 1), so the
  # assignment never overwrites: W holds each weight exactly once.
  w[in_index[out_pos, tap], :, out_pos, :] = taps_kernel[out_pos, tap]
  return w.reshape(num_pixels * c, o * f)


def conv_to_dense(kernel, bias, input_shape, strides=1, padding: Padding = "VALID", dilation=1):
  """The Dense layer computing nn.Conv(kernel [kh, kw, C, F], bias [F]) on H x W x C.

  Returns three values: W [H*W*C, Ho*Wo*F], b [Ho*Wo*F] (zeros when `bias` is None) and the
  output shape (Ho, Wo, F), so that `x.reshape(N, -1) @ W + b` is `conv(x).reshape(N, -1)`.
  """
  kernel = np.asarray(kernel)
  kh, kw, c, f = kernel.shape
  h, w, c_in = input_shape
  if c_in != c:
    raise ValueError(f"kernel has {c} input channels, input_shape {input_shape} has {c_in}")
  strides, dilation = _pairs(strides), _pairs(dilation)
  pads = resolve_padding(padding, (h, w), (kh, kw), strides, dilation)
  (ho, wo), in_index = _taps((h, w), (kh, kw), strides, pads, dilation)
  taps_kernel = np.broadcast_to(kernel.reshape(1, kh * kw, c, f), (ho * wo, kh * kw, c, f))
  dense = _place(taps_kernel, in_index, h * w, c)
  b = np.zeros((ho, wo, f), kernel.dtype) if bias is None else np.broadcast_to(
      np.asarray(bias), (ho, wo, f))
  return dense, np.ascontiguousarray(b).reshape(-1), (ho, wo, f)


def conv_local_to_dense(kernel, bias, input_shape, kernel_size, strides=1,
                        padding: Padding = "VALID", dilation=1):
  """(W, b, out_shape) of the Dense layer computing nn.ConvLocal on H x W x C.

  Linen's ConvLocal kernel is [Ho, Wo, C*kh*kw, F]: the patch is flattened channel-major, as
  `lax.conv_general_dilated_patches` makes it; its bias is [Ho, Wo, F].
  """
  kernel = np.asarray(kernel)
  ho, wo, patch, f = kernel.shape
  h, w, c = input_shape
  kh, kw = _pairs(kernel_size)
  if patch != kh * kw * c:
    raise ValueError(f"kernel patch size {patch} != {kh}*{kw}*{c}")
  strides, dilation = _pairs(strides), _pairs(dilation)
  pads = resolve_padding(padding, (h, w), (kh, kw), strides, dilation)
  out_hw, in_index = _taps((h, w), (kh, kw), strides, pads, dilation)
  if out_hw != (ho, wo):
    raise ValueError(f"kernel is for a {ho}x{wo} output, the layer makes {out_hw}")
  taps_kernel = kernel.reshape(ho * wo, c, kh * kw, f).transpose(0, 2, 1, 3)
  dense = _place(np.ascontiguousarray(taps_kernel), in_index, h * w, c)
  b = np.zeros((ho, wo, f), kernel.dtype) if bias is None else np.asarray(bias)
  return dense, np.ascontiguousarray(b).reshape(-1), (ho, wo, f)


def dense_to_conv(kernel, bias, input_shape):
  """(conv_kernel [H, W, C, F], bias [F]) of a VALID conv computing Dense(kernel [H*W*C, F]).

  The conv's kernel covers the whole input, so it has exactly one output position: its
  output [N, 1, 1, F] reshaped to [N, F] equals the Dense layer on x.reshape(N, -1).
  """
  kernel = np.asarray(kernel)
  h, w, c = input_shape
  if kernel.shape[0] != h * w * c:
    raise ValueError(f"Dense kernel has {kernel.shape[0]} inputs, input_shape {input_shape} "
                     f"flattens to {h * w * c}")
  f = kernel.shape[1]
  b = np.zeros((f,), kernel.dtype) if bias is None else np.asarray(bias)
  return kernel.reshape(h, w, c, f), b


def dense_equivalent_size(input_shape, kernel_shape, strides=1, padding: Padding = "VALID") -> dict:
  """Parameter count of a conv vs. the dense matrix (and its nonzeros) computing the same map."""
  kh, kw, c, f = kernel_shape
  h, w, _ = input_shape
  strides = _pairs(strides)
  pads = resolve_padding(padding, (h, w), (kh, kw), strides, (1, 1))
  (ho, wo), in_index = _taps((h, w), (kh, kw), strides, pads, (1, 1))
  return {"conv_params": kh * kw * c * f + f,
          "dense_params": h * w * c * ho * wo * f + ho * wo * f,
          "dense_nonzero_weights": int((in_index >= 0).sum()) * c * f,
          "output_shape": (ho, wo, f)}


# --- A whole CNN as its equivalent fully connected network (eFCN) -----------------------------


def pooled_shape(shape, window: int):
  """(H, W, C) after non-overlapping VALID max pooling (research.models.max_pool)."""
  h, w, c = shape
  return (h // window, w // window, c) if window > 1 else (h, w, c)


def cnn_to_fcn(model, params, input_shape):
  """(fcn_model, fcn_params): the CNN `model` with `params` as its eFCN, the same function.

  `model` is a research.models.CNN (conv, or locally connected: `block=models.LOCAL`); `params`
  its params (without the "params" collection key); `input_shape` (H, W, C) one image.
  Conv layer i (`Conv_i` / `ConvLocal_i`) becomes the Dense layer `ConvDense_i` of matrix
  [h*w*c, ho*wo*f] on the flattened feature map; the Dense layers of the head keep their names
  and values. `fcn_model` is `model.clone(block=models.DENSE)`:

      fcn_model, fcn_params = cnn_to_fcn(model, params, (28, 28, 1))
      fcn_model.apply({"params": fcn_params}, x)  # == model.apply({"params": params}, x)
  """
  if not hasattr(model, "as_dense") or model.as_dense:
    raise ValueError(f"cnn_to_fcn takes a research.models.CNN with conv layers, got {model!r}")
  params = params.get("params", params)
  shape = tuple(int(d) for d in input_shape)
  out = {}
  for i, _ in enumerate(model.features):
    if model.local:
      layer = params[f"ConvLocal_{i}"]
      w, b, out_shape = conv_local_to_dense(layer["kernel"], layer.get("bias"), shape,
                                            model.kernel_size, model.strides, model.padding)
    else:
      layer = params[f"Conv_{i}"]
      w, b, out_shape = conv_to_dense(layer["kernel"], layer.get("bias"), shape, model.strides,
                                      model.padding)
    out[f"ConvDense_{i}"] = {"kernel": w, "bias": b}
    shape = pooled_shape(out_shape, model.pool)
  for name, layer in params.items():
    if name.startswith("Dense_"):
      out[name] = {k: np.asarray(v) for k, v in layer.items()}
  from research import models
  return model.clone(block=models.DENSE), out


# --- Projections onto the locally connected and convolutional patterns -------------------------


def _gather_taps(dense, input_shape, kernel_size, features, strides, padding, dilation):
  """W [P*C, O*F] -> (its entries at every (output, tap) [O, T, C, F] (0 at padding taps),
  in_index [O, T], valid [O, T]): the coordinates a conv layer's weights occupy in W."""
  h, w, c = input_shape
  kh, kw = _pairs(kernel_size)
  strides, dilation = _pairs(strides), _pairs(dilation)
  pads = resolve_padding(padding, (h, w), (kh, kw), strides, dilation)
  (ho, wo), in_index = _taps((h, w), (kh, kw), strides, pads, dilation)
  dense = np.asarray(dense)
  if dense.shape != (h * w * c, ho * wo * features):
    raise ValueError(f"matrix {dense.shape} is not a {h}x{w}x{c} -> {ho}x{wo}x{features} layer")
  valid = in_index >= 0
  w4 = dense.reshape(h * w, c, ho * wo, features)
  out_pos = np.broadcast_to(np.arange(ho * wo)[:, None], in_index.shape)
  taps = w4[np.where(valid, in_index, 0), :, out_pos, :]  # [O, T, C, F]
  return taps * valid[:, :, None, None], in_index, valid


def project_local(dense, input_shape, kernel_size, features, strides=1,
                  padding: Padding = "VALID", dilation=1):
  """W with every entry outside its output's receptive field set to 0: the orthogonal
  projection onto the locally connected layers of this geometry."""
  taps, in_index, _ = _gather_taps(dense, input_shape, kernel_size, features, strides, padding,
                                   dilation)
  return _place(taps, in_index, input_shape[0] * input_shape[1], input_shape[2])


def project_conv(dense, input_shape, kernel_size, features, strides=1,
                 padding: Padding = "VALID", dilation=1):
  """The conv layer nearest to W (orthogonal projection): each tap's weight is the mean of W's
  entries for that tap over the output positions where it reads a pixel, placed back."""
  taps, in_index, valid = _gather_taps(dense, input_shape, kernel_size, features, strides,
                                       padding, dilation)
  counts = np.maximum(valid.sum(0), 1)[:, None, None]  # [T, 1, 1]
  kernel = taps.sum(0, dtype=np.float64) / counts  # [T, C, F]; exact for tied weights
  tied = np.broadcast_to(kernel, taps.shape) * valid[:, :, None, None]
  return _place(np.ascontiguousarray(tied, dtype=np.asarray(dense).dtype), in_index,
                input_shape[0] * input_shape[1], input_shape[2])


def subspace_fractions(dense, input_shape, kernel_size, features, strides=1,
                       padding: Padding = "VALID", dilation=1) -> dict:
  """||W - P(W)|| / ||W|| (Frobenius) for P the projection onto the locally connected pattern
  ("outside_local") and onto the conv pattern ("outside_conv"); 0 when W lies in it."""
  h, w, c = input_shape
  taps, in_index, valid = _gather_taps(dense, input_shape, kernel_size, features, strides,
                                       padding, dilation)
  dense = np.asarray(dense)
  total = float(np.linalg.norm(dense.astype(np.float64)))
  if total == 0:
    return {"outside_local": 0.0, "outside_conv": 0.0}
  # W minus its local projection is W with the receptive-field entries zeroed: exact, no
  # cancellation (a matrix just mapped from a conv gives exactly 0).
  outside = float(np.linalg.norm((dense - _place(taps, in_index, h * w, c)).astype(np.float64)))
  taps = taps.astype(np.float64)
  kernel = taps.sum(0) / np.maximum(valid.sum(0), 1)[:, None, None]
  spread_sq = float(np.sum(np.square((taps - kernel) * valid[:, :, None, None])))
  return {"outside_local": outside / total,
          "outside_conv": float(np.sqrt(outside ** 2 + spread_sq)) / total}
