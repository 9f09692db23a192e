"""Every layer of ``mlpstudy.nets`` in plain NumPy: forward and backward written out.

No autodiff and no library convolution: a batch is NHWC (``(N, H, W, C)``) or ``(N, n)``,
float32 or float64 (the parameters' dtype), and each layer is one small class holding the
buffers it writes, allocated once for the largest batch (a short last batch uses their
first rows). ``Model`` chains them for a ``nets.Net``; ``forward``, ``gradients`` and
``evaluate`` are its one-call forms. The equations, for one layer with input x, output y,
upstream gradient dy = dL/dy (L the batch's loss; a backward pass may overwrite dy, the
buffer of the layer after it):

- dense: y = act(x W + b); with dz = dy * act'(z): dW = x^T dz, db = sum_n dz,
  dx = dz W^T (three matrix products).
- ReLU (fused into dense and conv2d): y = max(z, 0), dz = dy * 1(y > 0).
- conv2d by im2col: the padded input's windows, one row per output pixel and one column
  per (u, v, c) kernel entry, are copied once into the matrix X_col (N Ho Wo, kh kw C),
  in one call from a strided view of every window (or, for fewer than
  ``PER_OFFSET_CHANNELS`` input channels, into X_col transposed with a row of ones, the
  bias folded into the product: ``Conv2DOp``); then z = X_col W_col + b is one matrix
  product with W_col the HWIO kernel as (kh kw C, O). Backward: dW_col =
  X_col^T dz, db = 1^T dz (a product with a vector of ones: a column sum over many short
  rows is slow as a reduction), and dX_col = dz W_col^T as one (N Ho Wo, C) block per
  kernel offset, D_uv = dz W[u, v]^T (one batched product, written over X_col, no longer
  needed), scattered back by col2im: dxp[:, u + i s_h, v + j s_w, :] += D_uv[n, i, j, :]
  as kh kw strided slice additions, no loop over pixels and no ``np.add.at``.
- ReLU before a max-pool: the pool's backward applies the ReLU's 1(z > 0) on its own
  output (at a window's maximum it is 1(y > 0)), a quarter of the values for a 2x2 pool,
  and the conv skips it: exact, because only a window's maximum receives a gradient.
  ``same`` padding: TensorFlow's (``nets.same_padding``), the input copied into a buffer
  whose zero border is written once.
- max-pool: y[n,i,j,c] = max_{u,v} x[n, i s_h + u, j s_w + v, c], one strided slice per
  window offset; backward, the argmax offset (found from the kept x and y) routes the
  gradient: dx at the maximum of each window += dy, 0 elsewhere. Ties go to the first
  maximum in the window's row-major order (a later offset wins only when strictly
  greater), as TensorFlow's and PyTorch's CPU kernels do. A conv before a pool whose
  windows tile its output emits only the covered pixels, window-major, so that each
  window offset is a contiguous block (``Conv2DOp.order_for``): the pixels no window
  covers feed nothing, and the loss and the weight gradients do not depend on a pixel
  order.
- flatten: a reshape to (N, H W C) in (h, w, c) order; backward, the reshape back.
- dropout (training): y = x * keep / (1 - rate) with the step's keep-mask (a boolean array
  like x), dx = dy * keep / (1 - rate); in evaluation y = x. Without a mask it keeps
  everything, unscaled (``Model.backward``'s ``keep`` is None).
- batch norm, per channel c over the M = N (H W) numbers of the batch (training):
  mu = mean x, var = mean (x - mu)^2 (biased), xhat = (x - mu) / sqrt(var + eps),
  y = act(gamma xhat + beta); backward, with dz = dy * act'(z): dgamma = sum dz xhat,
  dbeta = sum dz, dx = gamma / (M sqrt(var + eps)) (M dz - dbeta - xhat dgamma).
  ``Model.update_statistics`` then moves the running statistics (kept in the params):
  running <- momentum running + (1 - momentum) batch, for mean and (biased) variance.
  Evaluation: y = act(gamma (x - running mean) / sqrt(running var + eps) + beta). Its
  sums over the batch (mu, var, dgamma, dbeta) accumulate in float64: a sum over axis 0
  of an (M, C) array adds row by row, and at M = N H W (86528 for cnn-small's first map
  at batch 128) float32 accumulation erred by ~3e-6 relative.
- softmax + mean cross-entropy, fused, on the output layer's logits z:
  L = (1/N) sum_n (logsumexp(z_n) - z_n[y_n]) with logsumexp(z) = m + log sum exp(z - m),
  m = max z (no overflow, no log 0), and dL/dz = (softmax(z) - onehot) / N.

Mixed precision (``compute="bfloat16"``, the ``bfloat16`` precision; ``"float16"`` the
same with float16 rounding, ``to_float16``, and no loss scaling: NumPy provides none):
the weights, the optimizer and the gradients' accumulation stay float32; every dense and
conv product takes operands rounded to bfloat16 (a product of two bfloat16 numbers is
exact in float32, and BLAS accumulates the products in float32: what a bfloat16 matrix
product with float32 accumulation computes), and every layer's output, every input
gradient and every weight gradient is rounded to bfloat16 (``to_bfloat16``: round to
nearest, ties to even, by ``ml_dtypes``' cast), as a bfloat16 layer's are in Keras,
PyTorch and JAX; the softmax and the loss take the bfloat16 logits in float32, and batch
norm's statistics are float32. Max-pool, ReLU and flatten are exact on bfloat16 values.

Parameters are a dict by ``Net.param_names`` in the canonical (Keras) layout; ``Model``'s
gradients are views into one flat vector (``Model.grad``), laid out as ``flat`` lays out
parameters, so an optimizer updates everything with a few passes over one array.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
from numpy.lib.stride_tricks import as_strided

from mlpstudy.nets import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Net

from . import base

#: Up to this many columns (classes), ``row_max`` takes a row's maximum column by column.
FEW_COLUMNS = 32
#: Below this many input channels, a conv keeps X_col transposed and copies one window
#: offset at a time (a long inner loop over the pixels) instead of keeping it as rows,
#: every window at once (an inner loop over C): ``Conv2DOp``.
PER_OFFSET_CHANNELS = 4
#: A conv before a max-pool whose windows tile its output emits the covered pixels only,
#: window-major (``Conv2DOp.order_for``); False: every pixel, NHWC (tests compare the two).
WINDOW_MAJOR = True
#: The ops' buffers whose size does not grow with the batch (the rest have ``rows`` rows).
FIXED_BUFFERS = frozenset({"zeros", "bias_row", "w_aug", "g_aug"})


def to_bfloat16(a: np.ndarray) -> np.ndarray:
    """``a`` (float32) rounded in place to the nearest bfloat16, ties to even; returns it."""
    np.copyto(a, a.astype(ml_dtypes.bfloat16))
    return a


def to_float16(a: np.ndarray) -> np.ndarray:
    """``a`` (float32) rounded in place to the nearest float16 (IEEE half: 11 significant
    bits, largest 65504; beyond it inf, below 6e-8 zero), ties to even; returns it."""
    np.copyto(a, a.astype(np.float16))
    return a


#: compute dtype -> its rounding (``Model``'s ``compute``).
ROUNDINGS = {"bfloat16": to_bfloat16, "float16": to_float16}


def flat(arrays: dict[str, np.ndarray], dtype) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One flat vector holding ``arrays`` (copied in, in dict order), and views by name."""
    vector = np.empty(sum(a.size for a in arrays.values()), dtype)
    views, offset = {}, 0
    for name, array in arrays.items():
        views[name] = vector[offset : offset + array.size].reshape(array.shape)
        views[name][...] = array
        offset += array.size
    return vector, views


def one_hot(y: np.ndarray, n_classes: int, dtype) -> np.ndarray:
    out = np.zeros((len(y), n_classes), dtype)
    out[np.arange(len(y)), y] = 1
    return out


def _zeros_row(out_shape, dtype, relu: bool):
    """The row of zeros ``relu_`` compares one image's outputs with (None without ReLU)."""
    return np.zeros(math.prod(out_shape), dtype) if relu else None


def relu_(y: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """y <- max(y, 0) in place, each image's outputs against a row of ``zeros``: NumPy's
    maximum against a scalar runs no vector loop (measured: 2-3.5x slower on cnn-small's
    and the study's MLP's outputs)."""
    rows = y.reshape(len(y), -1)
    np.maximum(rows, zeros, out=rows)
    return y


def row_max(z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out <- the maximum of each row of ``z`` (N, k); ``out`` holds N numbers. For a few
    columns, one column at a time: a reduction along a short last axis loops per row
    (measured: 10 classes, 512 and 2400 rows, 4-9x slower)."""
    flat_out = out.reshape(-1, copy=False)
    if z.shape[1] > FEW_COLUMNS or z.shape[1] < 2:
        np.max(z, axis=1, out=flat_out)
        return out
    np.maximum(z[:, 0], z[:, 1], out=flat_out)
    for j in range(2, z.shape[1]):
        np.maximum(flat_out, z[:, j], out=flat_out)
    return out


def _window(start: int, count: int, stride: int) -> slice:
    """Rows start, start + stride, ..., ``count`` of them."""
    return slice(start, start + (count - 1) * stride + 1, stride)


class DenseOp:
    """Dense layer: y = act(x W + b) (module docstring); keeps x and y for backward."""

    def __init__(
        self, layer: Dense, names, in_shape, out_shape, rows, dtype, need_dx, backward=True
    ):
        self.w, self.b = names
        self.relu = layer.activation == "relu"
        self.y = np.empty((rows, *out_shape), dtype)
        self.mask = np.empty(self.y.shape, bool) if self.relu and backward else None
        self.zeros = _zeros_row(out_shape, dtype, self.relu)
        self.dx = np.empty((rows, *in_shape), dtype) if need_dx else None
        self.round = None  # set by Model: its compute's rounding under mixed precision

    def forward(self, x, params, train=False):
        self.x = x
        y = self.y[: len(x)]
        np.matmul(x, params[self.w], out=y)
        y += params[self.b]
        if self.round:
            self.round(y)
        if self.relu:
            relu_(y, self.zeros)
        return y

    def backward(self, dy, params, grads):
        """dz = dy * 1(y > 0) (in place in dy), dW = x^T dz, db = sum dz, dx = dz W^T."""
        rows = len(dy)
        if self.relu:
            mask = self.mask[:rows]
            np.greater(self.y[:rows], 0, out=mask)
            dy *= mask
        if self.round:
            self.round(dy)
        np.matmul(self.x.T, dy, out=grads[self.w])
        np.sum(dy, axis=0, out=grads[self.b])
        if self.round:
            self.round(grads[self.w])
            self.round(grads[self.b])
        if self.dx is None:
            return None
        dx = np.matmul(dy, params[self.w].T, out=self.dx[:rows])
        return self.round(dx) if self.round else dx


class Conv2DOp:
    """Conv2D by im2col and one matrix product; backward by col2im (module docstring).

    X_col is kept in one of two layouts, each copied in one call from a strided view of
    every window (``_windows``): as rows, (N Ho Wo, kh kw C); or, for fewer than
    ``PER_OFFSET_CHANNELS`` input channels, transposed, (kh kw C + 1, N Ho Wo) with a last
    row of ones, one row per kernel entry (a long inner loop over the pixels, where the
    rows' inner loop would run over C): z = [X_col^T; 1]^T [W_col; b] is then one product that adds
    the bias too, and [X_col^T; 1] dz gives dW_col and db in one (measured: cnn-small's
    first conv, forward and weight gradients 1.6x faster than as rows).
    """

    def __init__(
        self, layer: Conv2D, names, in_shape, out_shape, rows, dtype, need_dx, backward=True
    ):
        self.w, self.b = names
        self.relu = layer.activation == "relu"
        (h, w, c), o = in_shape, out_shape[2]
        (kh, kw), self.stride = layer.kernel, layer.stride
        (top, bottom), (left, right) = layer.pads(in_shape)
        self.kernel, self.in_shape, self.out_shape = (kh, kw), in_shape, out_shape
        self.offsets = [(u, v) for u in range(kh) for v in range(kw)]
        self.inner = (slice(top, top + h), slice(left, left + w))
        padded = (rows, h + top + bottom, w + left + right, c)
        self.xp = np.zeros(padded, dtype) if top + bottom + left + right else None
        self.transposed = c < PER_OFFSET_CHANNELS
        self.with_backward, self.need_dx = backward, need_dx
        if self.transposed:
            self.w_aug = np.empty((kh * kw * c + 1, o), dtype)  # [W_col; b]
            self.g_aug = np.empty((kh * kw * c + 1, o), dtype) if backward else None  # [dW_col; db]
        self.grid = None  # (ph, pw, Hp, Wp) once ``order_for`` a tiling max-pool after it
        self._pixel_buffers(rows, dtype)
        self.dxp = np.empty(padded, dtype) if need_dx else None
        self.dx = np.empty((rows, h, w, c), dtype) if need_dx and self.xp is not None else None
        self.masked_downstream = False  # set by Model: a max-pool after it applies 1(y > 0)
        self.round = None  # set by Model: its compute's rounding under mixed precision

    def _pixel_buffers(self, rows: int, dtype) -> None:
        """The buffers with one entry per output pixel: X_col, y, the ReLU's mask and its
        row of zeros; as rows, the bias's row, and under ``grid`` with an input gradient,
        dz in NHWC order (``dz_full``) and room for dX_col's blocks over every pixel."""
        k, (ho, wo, o) = self.kernel[0] * self.kernel[1] * self.in_shape[2], self.out_shape
        if self.grid is None:
            self.pixels, y_shape = ho * wo, self.out_shape
        else:
            self.pixels, y_shape = math.prod(self.grid), (*self.grid, o)
        m = rows * self.pixels
        self.dz_full = None
        self._col2im_views = {}  # rows -> ``_col2im``'s views of these buffers
        if self.transposed:
            # [X_col^T; 1]: the ones row is written once; backward writes dX_col^T above it
            self.cols = np.ones((k + 1, m), dtype)
        else:
            # X_col; in backward, its memory holds dX_col as (kh kw, N Ho Wo, C), which
            # under ``grid`` is over every output pixel, more than X_col's covered ones
            full = self.grid is not None and self.need_dx
            self.blocks = np.empty(rows * ho * wo * k if full else m * k, dtype)
            self.cols = self.blocks[: m * k].reshape(m, k)
            if full:  # the pixels no pool window covers get no gradient: zero, written once
                self.dz_full = np.zeros((rows, ho, wo, o), dtype)
            self.ones = np.ones(m, dtype) if self.with_backward else None  # db = 1^T dz
            # the bias repeated along an output row: y += b as rows of (Wo O), a long
            # inner loop instead of one of O (measured: cnn-small's first conv, 3.5x faster)
            self.bias_row = np.empty((y_shape[-2], o), dtype)
        self.y = np.empty((rows, *y_shape), dtype)
        self.mask = np.empty(self.y.shape, bool) if self.relu and self.with_backward else None
        self.zeros = _zeros_row(y_shape, dtype, self.relu)

    def order_for(self, pool: MaxPool2DOp, rows: int) -> None:
        """Emit only the pixels the windows of the tiling max-pool after it cover, window-
        major: y as (N, ph, pw, Hp, Wp, O), y[n, u, v, i, j] the output pixel (i ph + u,
        j pw + v), so that the pool's window offsets are contiguous blocks (set by Model).
        The im2col copy takes any pixel order at no cost, and skips the uncovered pixels
        (cnn-small's second conv: 100 of 121), as do its products; as rows, the input
        gradient puts dz back in NHWC order first (``dz_full``, uncovered pixels 0), so
        that col2im still adds whole rows (measured, cnn-small at batch 128 on one core,
        Haswell kernels: a step 4.06 -> 3.48 ms, the evaluation 11.7 -> 9.8 ms per 1000
        images, ``benchmarks/profile_numpy.py``)."""
        (ph, pw), (hp, wp, _) = pool.pool, pool.out_shape
        self.grid = (ph, pw, hp, wp)
        self._pixel_buffers(rows, self.y.dtype)

    def _ordered(self, a: np.ndarray) -> np.ndarray:
        """A (N, Ho, Wo, C) view over output pixels in this op's pixel order (a view): as
        it is, or (``grid``) the pixels a pool's windows cover, as (N, ph, pw, Hp, Wp, C)."""
        if self.grid is None:
            return a
        ph, pw, hp, wp = self.grid
        covered = a[:, : hp * ph, : wp * pw]
        tiles = covered.reshape(len(a), hp, ph, wp, pw, a.shape[-1], copy=False)
        return tiles.transpose(0, 2, 4, 1, 3, 5)

    def _windows(self, xp: np.ndarray) -> np.ndarray:
        """The (padded) input's windows, one per output pixel in this op's pixel order, as
        a read-only view (N, Ho, Wo, kh, kw, C), or (``grid``) (N, ph, pw, Hp, Wp, kh, kw, C):
        output pixel (i, j) reads xp[n, i s_h + u, j s_w + v, c]; under ``grid`` pixel
        (i ph + a, j pw + b) is entry [n, a, b, i, j] (``_ordered``). One strided view, so
        that the copy into X_col is one call however many offsets the kernel has."""
        s_n, s_h, s_w, s_c = xp.strides
        (sh, sw), (ho, wo, _) = self.stride, self.out_shape
        if self.grid is None:
            pixels, steps = (ho, wo), (sh * s_h, sw * s_w)
        else:
            ph, pw, hp, wp = self.grid
            pixels = self.grid
            steps = (sh * s_h, sw * s_w, ph * sh * s_h, pw * sw * s_w)
        shape = (len(xp), *pixels, *self.kernel, self.in_shape[2])
        return as_strided(xp, shape, (s_n, *steps, s_h, s_w, s_c), writeable=False)

    def x_col(self, rows: int) -> np.ndarray:
        """X_col (N pixels, kh kw C) of the last forward pass of ``rows`` images (a view)."""
        m = rows * self.pixels
        return self.cols[:-1, :m].T if self.transposed else self.cols[:m]

    def _entries(self, rows: int) -> np.ndarray:
        """The transposed layout's kernel-entry rows as (kh, kw, C, N pixels): a view."""
        kernel_t = self.cols[:-1, : rows * self.pixels]
        return kernel_t.reshape(*self.kernel, self.in_shape[2], -1, copy=False)

    def _col2im(self, rows: int):
        """col2im's operands for passes of ``rows`` images (views, built once per size):
        dX_col's blocks (as rows: (kh kw, N Ho Wo, C), the batched product's output) and,
        per kernel offset (u, v), the window of dxp it adds to and its block shaped as the
        window."""
        if rows not in self._col2im_views:
            (ho, wo, _), (sh, sw), c = self.out_shape, self.stride, self.in_shape[2]
            dxp, pairs = self.dxp[:rows], []
            if self.transposed:  # one row of dX_col^T per kernel entry, moved to NHWC's C
                entries, blocks = self._entries(rows), None
            else:
                blocks = self.blocks[: rows * ho * wo * len(self.offsets) * c]
                blocks = blocks.reshape(len(self.offsets), rows * ho * wo, c)
            for k, (u, v) in enumerate(self.offsets):
                window = dxp[:, _window(u, ho, sh), _window(v, wo, sw), :]
                if self.transposed:
                    pixels = self._ordered(window)
                    moved = entries[u, v].reshape(-1, *pixels.shape[:-1])
                    pairs.append((pixels, np.moveaxis(moved, 0, -1)))
                else:
                    pairs.append((window, blocks[k].reshape(rows, ho, wo, c)))
            self._col2im_views[rows] = (blocks, pairs)
        return self._col2im_views[rows]

    def forward(self, x, params, train=False):
        rows = len(x)
        if self.xp is None:
            xp = x
        else:
            xp = self.xp[:rows]
            xp[:, self.inner[0], self.inner[1], :] = x
        ho, wo, o = self.out_shape
        y = self.y[:rows]
        windows = self._windows(xp)  # (N, *pixels, kh, kw, C), a view
        if self.transposed:  # (kh, kw, C) first: one row of X_col^T per kernel entry
            entries = self._entries(rows).reshape(
                *windows.shape[-3:], *windows.shape[:-3], copy=False
            )
            np.copyto(entries, windows.transpose(-3, -2, -1, *range(windows.ndim - 3)))
            np.copyto(self.w_aug[:-1], params[self.w].reshape(-1, o))
            np.copyto(self.w_aug[-1], params[self.b])
            np.matmul(self.cols[:, : rows * self.pixels].T, self.w_aug, out=y.reshape(-1, o))
        else:
            cols = self.x_col(rows)
            np.copyto(cols.reshape(windows.shape, copy=False), windows)
            np.matmul(cols, params[self.w].reshape(-1, o), out=y.reshape(-1, o))
            self.bias_row[...] = params[self.b]
            rows_of_y = y.reshape(-1, self.bias_row.size, copy=False)  # raises rather than copy
            rows_of_y += self.bias_row.reshape(-1)
        if self.round:
            self.round(y)
        if self.relu:
            relu_(y, self.zeros)
        return y

    def backward(self, dy, params, grads):
        """dz = dy * 1(y > 0); dW_col = X_col^T dz; db = 1^T dz; dX_col = dz W_col^T, added
        back by col2im: as rows, one (N Ho Wo, C) block per kernel offset (one batched
        product); transposed, dX_col^T = W_col dz^T, one row per kernel entry."""
        rows = len(dy)
        o = self.out_shape[2]
        if self.relu and not self.masked_downstream:
            mask = self.mask[:rows]
            np.greater(self.y[:rows], 0, out=mask)
            dy *= mask
        if self.round:
            self.round(dy)
        dz = dy.reshape(-1, o)
        if self.transposed:
            np.matmul(self.cols[:, : len(dz)], dz, out=self.g_aug)
            np.copyto(grads[self.w].reshape(-1, o), self.g_aug[:-1])
            np.copyto(grads[self.b], self.g_aug[-1])
        else:
            np.matmul(self.x_col(rows).T, dz, out=grads[self.w].reshape(-1, o))
            np.matmul(self.ones[: len(dz)], dz, out=grads[self.b])
        if self.round:
            self.round(grads[self.w])
            self.round(grads[self.b])
        if not self.need_dx:
            return None
        dxp = self.dxp[:rows]
        dxp.fill(0)
        c = self.in_shape[2]
        if self.transposed:
            np.matmul(params[self.w].reshape(-1, o), dz.T, out=self.cols[:-1, : len(dz)])
        else:
            # dX_col[(u, v)] = dz W[u, v]^T for every offset at once, over X_col's memory:
            # contiguous (N, Ho, Wo, C) blocks, so each col2im addition runs over whole rows
            if self.dz_full is not None:  # window-major dz -> NHWC, uncovered pixels 0
                full = self.dz_full[:rows]
                np.copyto(self._ordered(full), dy)
                dz = full.reshape(-1, o)
            w_t = params[self.w].reshape(len(self.offsets), c, o).transpose(0, 2, 1)
            np.matmul(dz, w_t, out=self._col2im(rows)[0])
        for window, block in self._col2im(rows)[1]:
            window += block
        if self.round:
            self.round(dxp)
        if self.dx is None:
            return dxp
        dx = self.dx[:rows]
        np.copyto(dx, dxp[:, self.inner[0], self.inner[1], :])
        return dx


class MaxPool2DOp:
    """Max-pool with argmax routing, first maximum on ties (module docstring).

    Forward takes the maximum alone (one ``np.maximum`` per window offset, nothing kept
    but the output: evaluation pays for no routing). Backward finds each window's argmax
    from the kept input and output: offset k, in the window's row-major order, takes dy
    where x equals the maximum and the window is still ``free`` (no earlier offset took
    it; a boolean mask, cheaper than subtracting what each offset took from dy: measured,
    cnn-small's first pool, 0.8x the time), so ties go to the first maximum.

    After a conv that emits its pixels window-major (``Conv2DOp.order_for``: a pool whose
    windows tile its input), x is (N, ph, pw, Hp, Wp, C): each window offset one
    contiguous block per image, where NHWC's offsets are strided slices with an inner
    loop over C (measured: cnn-small's first pool at batch 128, forward 3x and backward
    2x faster).
    """

    def __init__(
        self, layer: MaxPool2D, names, in_shape, out_shape, rows, dtype, need_dx, backward=True
    ):
        self.pool, (sh, sw) = layer.pool, layer.stride
        (ph, pw), (h, w, _), (ho, wo, _) = self.pool, in_shape, out_shape
        self.out_shape = out_shape
        self.offsets = [
            (_window(u, ho, sh), _window(v, wo, sw)) for u in range(ph) for v in range(pw)
        ]
        self.y = np.empty((rows, *out_shape), dtype)
        self.hit = np.empty(self.y.shape, bool) if need_dx else None
        self.free = np.empty(self.y.shape, bool) if need_dx else None
        self.tiles = (sh, sw) == (ph, pw)  # windows side by side, no gap, no overlap
        # each input pixel in at most one window: dx is written, not added
        self.disjoint = sh >= ph and sw >= pw
        self.covers = self.tiles and (h, w) == (ho * sh, wo * sw)
        self.dx = np.empty((rows, *in_shape), dtype) if need_dx else None
        self.taken = None if self.disjoint or not need_dx else np.empty(self.y.shape, dtype)
        self.window_major = False  # set by Model (``take_window_major``)
        self.relu_input = False  # set by Model: the input is a ReLU's output

    def take_window_major(self, rows: int) -> None:
        """Take x as the conv before it emits it (``Conv2DOp.order_for``) and give dx in
        the same order: (N, ph, pw, Hp, Wp, C), the pixels no window covers left out."""
        self.window_major, self.covers = True, True
        if self.dx is not None:
            self.dx = np.empty((rows, *self.pool, *self.out_shape), self.dx.dtype)

    def _slices(self, a: np.ndarray) -> list[np.ndarray]:
        """Each window offset's values of an input-shaped array, in row-major order, as
        arrays shaped like the output (views)."""
        if self.window_major:  # (N, ph, pw, Hp, Wp, C): offset k is block k of each image
            blocks = a.reshape(len(a), len(self.offsets), -1).swapaxes(0, 1)
            return [block.reshape(len(a), *self.out_shape) for block in blocks]
        return [a[:, i, j, :] for i, j in self.offsets]

    def forward(self, x, params, train=False):
        self.x = x
        y = self.y[: len(x)]
        first, *rest = self._slices(x)
        if not rest:
            np.copyto(y, first)
            return y
        second, *rest = rest
        np.maximum(first, second, out=y)
        for values in rest:
            np.maximum(y, values, out=y)
        return y

    def backward(self, dy, params, grads):
        """dx[n, i s_h + u, j s_w + v, c] += dy[n, i, j, c] where (u, v) is the argmax."""
        rows = len(dy)
        y, dx, hit, free = self.y[:rows], self.dx[:rows], self.hit[:rows], self.free[:rows]
        if self.relu_input:
            # the ReLU before the pool: its 1(z > 0) at a window's maximum is 1(y > 0)
            np.greater(y, 0, out=free)
        else:
            free.fill(True)
        if not self.covers:
            dx.fill(0)
        last = len(self.offsets) - 1
        for k, (values, out) in enumerate(zip(self._slices(self.x), self._slices(dx))):
            np.equal(values, y, out=hit)
            np.logical_and(hit, free, out=hit)
            if self.disjoint:
                np.multiply(dy, hit, out=out)
            else:
                out += np.multiply(dy, hit, out=self.taken[:rows])
            if k < last:
                np.logical_xor(free, hit, out=free)  # hit is within free: free and not hit
        return dx


class FlattenOp:
    """(N, H, W, C) -> (N, H W C) in (h, w, c) order: a view (buffers are contiguous)."""

    def __init__(
        self, layer: Flatten, names, in_shape, out_shape, rows, dtype, need_dx, backward=True
    ):
        self.in_shape = in_shape

    def forward(self, x, params, train=False):
        return x.reshape(len(x), -1)

    def backward(self, dy, params, grads):
        return dy.reshape(len(dy), *self.in_shape)


class DropoutOp:
    """Inverted dropout with a given keep-mask (module docstring); identity in evaluation."""

    def __init__(
        self, layer: Dropout, names, in_shape, out_shape, rows, dtype, need_dx, backward=True
    ):
        self.scale = 1.0 / (1.0 - layer.rate)  # a Python float: no float64 pass (NEP 50)
        self.y = np.empty((rows, *out_shape), dtype) if backward else None  # training only
        self.dx = np.empty((rows, *in_shape), dtype) if need_dx else None
        self.keep = None  # set by Model for each training step: a bool array like x
        self.round = None  # set by Model: its compute's rounding under mixed precision

    def forward(self, x, params, train=False):
        if not train or self.keep is None:
            return x
        y = self.y[: len(x)]
        np.multiply(x, self.keep, out=y)
        y *= self.scale
        return self.round(y) if self.round else y

    def backward(self, dy, params, grads):
        if self.keep is None:
            return dy
        dx = self.dx[: len(dy)]
        np.multiply(dy, self.keep, out=dx)
        dx *= self.scale
        return self.round(dx) if self.round else dx


class BatchNormOp:
    """Batch norm per channel (the last axis), Keras' conventions (module docstring)."""

    def __init__(
        self, layer: BatchNorm, names, in_shape, out_shape, rows, dtype, need_dx, backward=True
    ):
        self.gamma, self.beta, self.mean, self.var = names
        self.eps, self.momentum = float(layer.epsilon), float(layer.momentum)
        self.relu = layer.activation == "relu"
        self.y = np.empty((rows, *out_shape), dtype)
        self.xhat = np.empty((rows, *out_shape), dtype)
        self.mask = np.empty(self.y.shape, bool) if self.relu and backward else None
        self.zeros = _zeros_row(out_shape, dtype, self.relu)
        self.dx = np.empty((rows, *in_shape), dtype) if need_dx else None
        c = in_shape[-1]
        self.batch_mean, self.batch_var, self.inv = (np.empty(c, dtype) for _ in range(3))
        self.masked_downstream = False  # set by Model: a max-pool after it applies 1(y > 0)
        self.round = None  # set by Model: its compute's rounding under mixed precision

    def forward(self, x, params, train=False):
        rows = len(x)
        flat_x = x.reshape(-1, x.shape[-1])  # (M, C): every number of a channel in a column
        xhat = self.xhat[:rows]
        flat_hat = xhat.reshape(flat_x.shape)
        if train:  # sums over axis 0 add row by row: accumulate in float64 (M is large)
            self.batch_mean[...] = np.mean(flat_x, axis=0, dtype=np.float64)
            np.subtract(flat_x, self.batch_mean, out=flat_hat)
            self.batch_var[...] = np.mean(np.square(flat_hat), axis=0, dtype=np.float64)
            np.add(self.batch_var, self.eps, out=self.inv)
            np.sqrt(self.inv, out=self.inv)
            np.reciprocal(self.inv, out=self.inv)
        else:
            np.subtract(flat_x, params[self.mean], out=flat_hat)
            np.reciprocal(np.sqrt(params[self.var] + self.eps), out=self.inv)
        flat_hat *= self.inv
        y = self.y[:rows]
        np.multiply(xhat, params[self.gamma], out=y)
        y += params[self.beta]
        if self.round:
            self.round(y)
        if self.relu:
            relu_(y, self.zeros)
        return y

    def backward(self, dy, params, grads):
        """dz = dy 1(y > 0); dgamma = sum dz xhat, dbeta = sum dz,
        dx = gamma inv / M (M dz - dbeta - xhat dgamma)."""
        rows = len(dy)
        if self.relu and not self.masked_downstream:
            mask = self.mask[:rows]
            np.greater(self.y[:rows], 0, out=mask)
            dy *= mask
        c = dy.shape[-1]
        dz, xhat = dy.reshape(-1, c), self.xhat[:rows].reshape(-1, c)
        grads[self.beta][...] = np.sum(dz, axis=0, dtype=np.float64)
        grads[self.gamma][...] = np.einsum("mc,mc->c", dz, xhat, dtype=np.float64)
        if self.round:
            self.round(grads[self.beta])
            self.round(grads[self.gamma])
        if self.dx is None:
            return None
        m = len(dz)
        dx = self.dx[:rows]
        flat_dx = dx.reshape(-1, c)
        np.multiply(xhat, grads[self.gamma], out=flat_dx)
        flat_dx += grads[self.beta]
        flat_dx *= -1.0 / m
        flat_dx += dz
        flat_dx *= params[self.gamma] * self.inv
        return self.round(dx) if self.round else dx

    def update_statistics(self, params) -> None:
        """running <- momentum running + (1 - momentum) batch (mean, biased variance)."""
        for name, batch in ((self.mean, self.batch_mean), (self.var, self.batch_var)):
            running = params[name]
            running *= self.momentum
            running += (1.0 - self.momentum) * batch


OPS = {
    Dense: DenseOp,
    Conv2D: Conv2DOp,
    MaxPool2D: MaxPool2DOp,
    Flatten: FlattenOp,
    Dropout: DropoutOp,
    BatchNorm: BatchNormOp,
}


class Model:
    """A ``nets.Net`` on passes of up to ``rows`` images of ``input_shape``, in ``dtype``:
    every buffer a pass writes allocated once, gradients as views into ``grad``.

    A larger batch is taken ``rows`` images at a time: ``evaluate`` sums the chunks'
    losses, ``backward`` their gradients (exact, up to the order of float additions; not
    for a net with batch norm, whose statistics are the whole batch's, nor under mixed
    precision, whose weight gradients are rounded as a whole). ``backward=False``: an
    evaluation model, with no buffer of a backward pass. The layers before the first
    parameterised one get no backward pass, and that layer computes no input gradient.
    """

    def __init__(
        self,
        net: Net,
        input_shape,
        rows: int,
        dtype=np.float32,
        compute=None,
        backward: bool = True,
    ):
        self.net, self.input_shape = net, tuple(input_shape)
        self.rows, self.dtype = rows, np.dtype(dtype)
        self.with_backward = backward
        if (compute is not None and compute not in ROUNDINGS) or (
            compute and self.dtype != np.float32
        ):
            raise ValueError(
                f"compute must be None or one of {', '.join(ROUNDINGS)} (float32 weights), "
                f"got {compute!r}"
            )
        self.compute = compute
        shapes = net.check(self.input_shape)
        self.param_shapes = {
            name: shape
            for name, shape in net.param_shapes(self.input_shape).items()
            if name in net.param_names
        }
        first = net.param_layers[0] if net.param_layers else len(net.layers)
        names = net.layer_weights()
        self.ops = [
            OPS[type(layer)](
                layer,
                names.get(i, ()),
                shapes[i],
                shapes[i + 1],
                rows,
                self.dtype,
                backward and i > first,
                backward=backward,
            )
            for i, layer in enumerate(net.layers)
        ]
        self.first = first  # backward runs from the last layer down to this one
        for op, after in zip(self.ops, self.ops[1:]):
            if (
                isinstance(op, (Conv2DOp, BatchNormOp))
                and op.relu
                and isinstance(after, MaxPool2DOp)
            ):
                op.masked_downstream = after.relu_input = after.hit is not None
            tiling_pool = isinstance(after, MaxPool2DOp) and after.tiles
            if WINDOW_MAJOR and isinstance(op, Conv2DOp) and tiling_pool:
                op.order_for(after, rows)
                after.take_window_major(rows)
        self.dropouts = [op for op in self.ops if isinstance(op, DropoutOp)]
        self.norms = [op for op in self.ops if isinstance(op, BatchNormOp)]
        # mixed precision: every op rounds what it writes; the weights it reads are
        # bfloat16-rounded copies (``_compute_params``), and so is the input batch
        self.rounded = self.rounded_x = None
        if compute:
            for op in self.ops:
                if hasattr(op, "round"):
                    op.round = ROUNDINGS[compute]
            trained = net.param_names
            self.rounded = flat({k: np.zeros(self.param_shapes[k], self.dtype)
                                 for k in trained}, self.dtype)  # fmt: skip
            self.rounded_x = np.empty((rows, *self.input_shape), self.dtype)
        zeros = {name: np.zeros(shape, self.dtype) for name, shape in self.param_shapes.items()}
        self.grad, self.grads = flat(zeros, self.dtype) if backward else (np.empty(0), {})
        self.chunks_batch = backward and not (self.norms or compute)
        #: a chunk's gradients, added into ``grad`` after the first chunk of a batch
        self.chunk_grad, self.chunk_grads = (
            flat(zeros, self.dtype) if self.chunks_batch else (None, None)
        )
        k = net.n_classes
        self.row_max = np.empty((rows, 1), self.dtype)
        self.row_sum = np.empty((rows, 1), self.dtype)
        # row sums as a product with ones (a sum along a short last axis loops per row:
        # measured, 10 classes, 4-7x slower)
        self.class_ones = np.ones((k, 1), self.dtype)
        self.exp = np.empty((rows, k), self.dtype)
        arrays, fixed = [self.row_max, self.row_sum, self.exp], []
        for op in self.ops:
            for name, a in vars(op).items():
                if isinstance(a, np.ndarray) and a.base is None:  # views counted once
                    (fixed if name in FIXED_BUFFERS else arrays).append(a)
        #: Bytes of the buffers per image of batch (those with ``rows`` rows), and in all,
        #: the fixed ones and ``grad`` included: what a step writes besides batch and
        #: parameters.
        self.row_bytes = sum(a.nbytes for a in arrays) // rows
        grad_bytes = self.grad.nbytes * (2 if self.chunks_batch else 1)
        self.nbytes = self.row_bytes * rows + sum(a.nbytes for a in fixed) + grad_bytes

    def forward(self, params, x, train: bool = False, keep=None) -> np.ndarray:
        """The logits of the batch ``x`` (a view of a buffer: the next call overwrites it);
        ``x`` is ``(N, *input_shape)`` or any shape with N rows of the same size.
        ``train``: as in a training step (batch norms on the batch's statistics, dropouts
        applying ``keep``, one keep-mask per dropout layer, or keeping all when None);
        else as in evaluation."""
        x = x.reshape(len(x), *self.input_shape)
        for i, op in enumerate(self.dropouts):
            op.keep = None if keep is None or not train else keep[i]
        if self.compute:
            params, x = self._compute_params(params), self._rounded_input(x)
        for op in self.ops:
            x = op.forward(x, params, train)
        return x

    def _compute_params(self, params):
        """Under mixed precision: the trained weights rounded to bfloat16 (one pass over a
        flat copy), the running statistics as they are; else ``params``."""
        vector, views = self.rounded
        for name, view in views.items():
            np.copyto(view, params[name])
        ROUNDINGS[self.compute](vector)
        return {**params, **views}

    def _rounded_input(self, x):
        out = self.rounded_x[: len(x)]
        np.copyto(out, x)
        return ROUNDINGS[self.compute](out)

    def update_statistics(self, params) -> None:
        """Move every batch norm's running statistics in ``params`` by the batch of the
        last training forward pass (a training step calls it once, after ``backward``)."""
        for op in self.norms:
            op.update_statistics(params)

    def backward(self, params, x, onehot, scale: float, keep=None) -> None:
        """``grads`` <- ``scale`` times the summed per-image gradients of the cross-entropy
        of ``(x, onehot)`` (``scale = 1/N``: those of the mean loss; an SGD step folds
        its learning rate in), the forward pass as in training (``forward``'s ``keep``):
        ``rows`` images at a time, each chunk's gradients added to the first's."""
        if not self.with_backward:
            raise ValueError("this Model was built for evaluation (backward=False)")
        n = len(x)
        if n > self.rows and not self.chunks_batch:
            raise ValueError(
                f"a batch of {n} images in passes of {self.rows}: a net with batch norm or "
                "under mixed precision takes its batch in one pass"
            )
        for s in range(0, n, self.rows):
            e = min(s + self.rows, n)
            chunk_keep = [mask[s:e] for mask in keep] if keep is not None else None
            grads = self.grads if s == 0 else self.chunk_grads
            self._backward(params, x[s:e], onehot[s:e], scale, chunk_keep, grads)
            if s:
                self.grad += self.chunk_grad

    def _backward(self, params, x, onehot, scale: float, keep, grads) -> None:
        """One pass of ``backward`` over at most ``rows`` images, its gradients written
        into ``grads``. dL/dz = scale (softmax(z) - onehot) on the shifted logits."""
        rows = len(x)
        z = self.forward(params, x, True, keep)
        if self.compute:
            params = self.rounded[1] | {k: params[k] for k in self.net.state_names}
        z -= row_max(z, self.row_max[:rows])
        np.exp(z, out=z)
        z /= np.matmul(z, self.class_ones, out=self.row_sum[:rows])
        z -= onehot
        z *= scale
        dy = z
        for op in reversed(self.ops[self.first :]):
            dy = op.backward(dy, params, grads)

    def loss_sums(self, params, x, y, train: bool = False, keep=None) -> tuple[float, int]:
        """Summed cross-entropy (in float64) and number of correct predictions of a batch:
        logsumexp(z) - z[y] on the shifted logits (``forward``'s ``train`` and ``keep``)."""
        rows = len(x)
        z = self.forward(params, x, train, keep)
        z -= row_max(z, self.row_max[:rows])
        exp = np.exp(z, out=self.exp[:rows])
        log_norm = np.log(np.matmul(exp, self.class_ones, out=self.row_sum[:rows]))[:, 0]
        picked = np.take_along_axis(z, y[:, None], axis=1)[:, 0]
        loss = float(np.sum(log_norm - picked, dtype=np.float64))
        return loss, int(np.count_nonzero(z.argmax(axis=1) == y))

    def evaluate(self, params, x, y) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on ``(x, y)``, ``rows`` images at a time."""
        y = np.asarray(y)
        loss, correct = 0.0, 0
        for s in range(0, len(x), self.rows):
            batch_loss, batch_correct = self.loss_sums(
                params, x[s : s + self.rows], y[s : s + self.rows]
            )
            loss, correct = loss + batch_loss, correct + batch_correct
        return loss / len(x), correct / len(x)


def _dtype(params) -> np.dtype:
    return next(iter(params.values())).dtype


def forward(net: Net, params, x: np.ndarray) -> np.ndarray:
    """The logits of ``x`` (``(N, *image shape)``), a new array, in the params' dtype."""
    x = np.ascontiguousarray(x, dtype=_dtype(params))
    return Model(net, x.shape[1:], len(x), x.dtype).forward(params, x).copy()


def gradients(net: Net, params, x: np.ndarray, y: np.ndarray, keep=None):
    """Mean cross-entropy of ``(x, y)`` and its gradients (of ``net.param_names``), in the
    params' dtype (float64 for finite-difference checks), the forward pass as in
    training: batch norms on the batch's statistics, dropouts applying ``keep``."""
    x = np.ascontiguousarray(x, dtype=_dtype(params))
    model = Model(net, x.shape[1:], len(x), x.dtype)
    loss = model.loss_sums(params, x, np.asarray(y), True, keep)[0] / len(x)
    model.backward(params, x, one_hot(y, net.n_classes, x.dtype), 1.0 / len(x), keep)
    return loss, {name: g.copy() for name, g in model.grads.items()}


def norm_inputs(net: Net, params, x: np.ndarray, keep=None) -> list[np.ndarray]:
    """The input of every batch norm in a training forward pass of ``x`` (copies, in
    layer order): what their batch statistics are taken over."""
    x = np.ascontiguousarray(x, dtype=_dtype(params))
    model = Model(net, x.shape[1:], len(x), x.dtype)
    inputs = []
    for op in model.norms:
        forward = op.forward

        def record(x, params, train, forward=forward):
            inputs.append(np.array(x))
            return forward(x, params, train)

        op.forward = record
    model.forward(params, x, True, keep)
    return inputs


def pass_rows(net: Net, input_shape, batch: int, dtype, compute=None, backward=True) -> int:
    """Images per pass for batches of up to ``batch``: the whole batch, or, where a pass
    over it would touch more than ``base.CHUNK_BYTES`` (input rows and layer buffers) and
    the net can be taken in chunks (``Model``), passes of ceil(batch / k) images, k the
    fewest that keep within it (measured against whole batches, one pinned core: the
    evaluation of cnn, cnn-small and mlp 0.72x, 0.74x and 0.88x the time, a training step
    of cnn at batch 128 0.82x, of cnn-small at batch 512 0.73x)."""
    one = Model(net, input_shape, 1, dtype, compute, backward)
    if backward and not one.chunks_batch:
        return batch
    per_row = one.row_bytes + math.prod(input_shape) * np.dtype(dtype).itemsize
    chunks = -(-batch // max(1, base.CHUNK_BYTES // per_row))
    return -(-batch // chunks)


def trainer(net: Net, input_shape, batch: int, dtype, compute=None) -> Model:
    """The model that trains on batches of up to ``batch`` images (``pass_rows``)."""
    return Model(
        net, input_shape, pass_rows(net, input_shape, batch, dtype, compute), dtype, compute
    )


def evaluator(net: Net, input_shape, n: int, dtype, compute=None) -> Model:
    """The evaluation model for up to ``n`` images of ``input_shape``, taken in chunks
    (``pass_rows``; ``compute``: ``Model``'s). Training builds it once: a model built per
    evaluation places its buffers anew each epoch (measured: the study's MLP, 25-40 ms of
    page faults on MNIST's 70,000 images, a quarter of the evaluation)."""
    rows = pass_rows(net, input_shape, n, dtype, compute, backward=False)
    return Model(net, input_shape, rows, dtype, compute, backward=False)


def evaluate(net: Net, params, x: np.ndarray, y: np.ndarray, compute=None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``params`` on ``(x, y)`` (:func:`evaluator`)."""
    x = np.asarray(x, dtype=_dtype(params))
    return evaluator(net, x.shape[1:], len(x), x.dtype, compute).evaluate(params, x, y)
