"""Exact Dense <-> Conv equivalence, both ways.

* `conv_to_dense(kernel, bias, input_shape, strides, padding, dilation)`: the matrix W
  [H*W*C, Ho*Wo*F] and bias [Ho*Wo*F] with `x.reshape(N, -1) @ W + b` equal to the convolution
  (flattened in (row, column, feature) order, as `y.reshape(N, -1)`). W is built by placing the
  kernel's taps at their input positions, not by probing the layer: each row of W is one input
  pixel-channel, each column one output position-feature, and most entries are zero.
  `conv_local_to_dense` does the same for an unshared (locally connected) kernel.
* `dense_to_conv(kernel, bias, input_shape)`: a Dense layer on the flattened input as a Conv
  whose kernel covers the whole input (H x W, VALID padding): output [N, 1, 1, F].

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
  """(W, b) of the Dense layer computing nn.Conv(kernel [kh, kw, C, F], bias [F]) on H x W x C.

  Returns W [H*W*C, Ho*Wo*F], b [Ho*Wo*F] and the output shape (Ho, Wo, F).
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
