"""A vision transformer's patch embedding: cut the image into patches, then one linear map.

An image ``[C, H, W]`` is cut into non-overlapping ``p x p`` patches, read row by
row (patch ``(r, s)`` becomes token ``r (W/p) + s``); each patch is flattened in
the order channel, row, column into a vector of ``C p^2`` values, and every
token is the same affine map of its patch::

    tokens = unfold(images) W + b          [batch, (H/p)(W/p), C p^2] [C p^2, d_model]

This is exactly a convolution whose stride equals its kernel size, because the
windows do not overlap: PyTorch's ``Conv2d(C, d_model, kernel_size=p, stride=p)``
with weight ``W^T`` reshaped to ``[d_model, C, p, p]``. Unfolding only moves
entries, so its adjoint (the backward of unfolding) moves them back: :func:`fold_patches`.
"""

from __future__ import annotations

import operator

import numpy as np

from ._checks import as_float64, require
from .layers import linear, linear_backward

__all__ = ["unfold_patches", "fold_patches", "patch_embed", "patch_embed_backward"]


def _patch_size(patch) -> int:
    try:
        patch = operator.index(patch)
    except TypeError:
        raise ValueError(f"patch must be an integer, got {patch!r}") from None
    require(patch >= 1, f"patch must be >= 1, got {patch}")
    return patch


def unfold_patches(images, patch):
    """Non-overlapping ``patch x patch`` windows as rows: ``[B, C, H, W] -> [B, N, C patch^2]``.

    Parameters
    ----------
    images : array_like, shape ``[batch, channels, height, width]``
        ``height`` and ``width`` must be multiples of ``patch``.
    patch : int

    Returns
    -------
    patches : ndarray, shape ``[batch, (height/patch) (width/patch), channels patch^2]``
        Patches row by row; inside a patch, channel first, then row, then column.

    Raises
    ------
    ValueError
        If ``images`` is not 4-D or its sides are not multiples of ``patch``.

    Examples
    --------
    A 1-channel 2 x 4 image in two 2 x 2 patches:

    >>> image = np.arange(8.0).reshape(1, 1, 2, 4)
    >>> unfold_patches(image, 2).tolist()
    [[[0.0, 1.0, 4.0, 5.0], [2.0, 3.0, 6.0, 7.0]]]
    """
    images, patch = as_float64(images, "images"), _patch_size(patch)
    require(images.ndim == 4, f"images {images.shape} must be [batch, channels, height, width]")
    B, C, H, W = images.shape
    require(H % patch == 0 and W % patch == 0,
            f"images {images.shape}: height {H} and width {W} must be multiples of patch = {patch}")
    grid = images.reshape(B, C, H // patch, patch, W // patch, patch)
    # axes: batch, patch row, patch column, channel, row in patch, column in patch
    return grid.transpose(0, 2, 4, 1, 3, 5).reshape(B, (H // patch) * (W // patch), C * patch * patch)


def fold_patches(patches, image_shape, patch):
    """The adjoint of :func:`unfold_patches`, here also its inverse: rows back into an image.

    Parameters
    ----------
    patches : array_like, shape ``[batch, N, channels patch^2]``
    image_shape : tuple of int
        ``(batch, channels, height, width)`` of the image the patches came from.
    patch : int

    Returns
    -------
    images : ndarray, shape ``image_shape``

    Examples
    --------
    >>> image = np.arange(8.0).reshape(1, 1, 2, 4)
    >>> bool(np.array_equal(fold_patches(unfold_patches(image, 2), image.shape, 2), image))
    True
    """
    patches, patch = as_float64(patches, "patches"), _patch_size(patch)
    require(len(image_shape) == 4, f"image_shape {image_shape} must be (batch, channels, height, width)")
    B, C, H, W = image_shape
    require(H % patch == 0 and W % patch == 0,
            f"image_shape {image_shape}: height and width must be multiples of patch = {patch}")
    expected = (B, (H // patch) * (W // patch), C * patch * patch)
    require(patches.shape == expected, f"patches {patches.shape} must be {expected} for images {image_shape}")
    grid = patches.reshape(B, H // patch, W // patch, C, patch, patch)
    return grid.transpose(0, 3, 1, 4, 2, 5).reshape(B, C, H, W)


def patch_embed(images, W, b, patch):
    """Patch embedding ``tokens = unfold(images) W + b``: a convolution with stride = kernel = ``patch``.

    Parameters
    ----------
    images : array_like, shape ``[batch, channels, height, width]``
    W : array_like, shape ``[channels patch^2, d_model]``
        Row ``c patch^2 + r patch + s`` weighs pixel ``(r, s)`` of channel ``c``
        of a patch (the order of :func:`unfold_patches`).
    b : array_like, shape ``[d_model]``, or None
        None means no bias.
    patch : int
        Side of the square patches; must divide height and width.

    Returns
    -------
    tokens : ndarray, shape ``[batch, (height/patch) (width/patch), d_model]``
    cache : tuple
        ``(linear cache, image_shape, patch)``; the linear map's cache holds the
        unfolded ``patches`` and ``W``. All that :func:`patch_embed_backward` needs.

    Raises
    ------
    ValueError
        If the shapes do not fit together; the message names them.

    Examples
    --------
    Summing each patch's pixels:

    >>> tokens, _ = patch_embed(np.arange(8.0).reshape(1, 1, 2, 4), np.ones((4, 1)), [0.0], 2)
    >>> tokens.tolist()
    [[[10.0], [18.0]]]
    """
    patches = unfold_patches(images, patch)
    W = as_float64(W, "W")
    require(W.ndim == 2 and W.shape[0] == patches.shape[-1],
            f"W {W.shape} must be [channels patch^2 = {patches.shape[-1]}, d_model] "
            f"for images {np.shape(images)} and patch {patch}")
    tokens, cache_linear = linear(patches, W, b)
    return tokens, (cache_linear, np.shape(images), patch)


def patch_embed_backward(dtokens, cache):
    """Backward pass of :func:`patch_embed`.

    ``dpatches = dtokens W^T``, then folded back into the image (the adjoint of
    unfolding); ``dW = patches^T dtokens`` and ``db = sum(dtokens)`` over batch and tokens.

    Parameters
    ----------
    dtokens : array_like, shape ``[batch, N, d_model]``
    cache : tuple
        From :func:`patch_embed`.

    Returns
    -------
    dimages : ndarray, shape ``[batch, channels, height, width]``
    dW : ndarray, shape ``[channels patch^2, d_model]``
    db : ndarray, shape ``[d_model]``, or None
        None when the forward pass had no bias.

    Examples
    --------
    >>> _, cache = patch_embed(np.arange(8.0).reshape(1, 1, 2, 4), np.ones((4, 1)), [0.0], 2)
    >>> dimages, dW, db = patch_embed_backward([[[1.0], [2.0]]], cache)
    >>> dimages.tolist(), db.tolist()
    ([[[[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]]], [3.0])
    """
    cache_linear, image_shape, patch = cache
    dpatches, dW, db = linear_backward(dtokens, cache_linear)
    return fold_patches(dpatches, image_shape, patch), dW, db
