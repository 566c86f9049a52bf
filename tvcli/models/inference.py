"""Memory-bounded inference of image-to-image networks: overlapping tiles."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EdgeProbability", "apply_model", "denoise", "tile_starts"]


def apply_model(model: nn.Module, x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """``model(x)``, or ``model(x, sigma)`` for a model with a noise-level input
    (``model.takes_sigma``); sigma in [0, 1] intensity units (sigma_255 / 255)."""
    if getattr(model, "takes_sigma", False):
        if sigma is None:
            raise ValueError("this model needs the noise level sigma")
        return model(x, sigma)
    return model(x)


def tile_starts(size: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with at least
    ``overlap`` shared pixels between neighbours; the last tile ends at ``size``.

    With ``multiple`` > 1 every start is a multiple of it (networks that work on a
    downsampled grid, e.g. FFDNet's 2x2 pixel groups, then see the same grouping
    in every tile as in the whole image); the last tile may then be up to
    ``multiple - 1`` pixels longer than ``tile``.
    """
    if size <= tile:
        return [0]
    step = max(multiple, (tile - overlap) // multiple * multiple)
    last = (size - tile) // multiple * multiple
    starts = list(range(0, last, step))
    starts.append(last)
    return starts


@torch.no_grad()
def denoise(model: nn.Module, image: torch.Tensor, tile: int | None = 512,
            overlap: int = 32, sigma: float | None = None) -> torch.Tensor:
    """Runs ``model`` over ``image`` in overlapping tiles.

    Each output pixel is taken from the tile in which it lies farthest from a
    tile border (no blending): with ``overlap`` at least the network's receptive
    radius (17 for DnCNN), tiles give the untiled result up to rounding. Tile
    offsets are multiples of ``model.tile_multiple`` (default 1).

    Args:
        model: maps (1, C, h, w) -> (1, C, h, w).
        image: (C, H, W) float tensor in [0, 1] on the model's device.
        tile: tile side in pixels; None runs the whole image at once.
        overlap: pixels shared by neighbouring tiles (even, >= 2x receptive radius
            for an exact seam).
        sigma: noise level in [0, 1] units, for models with a noise-level input
            (``model.takes_sigma``); ignored by the others.
    Returns:
        (C', H, W) tensor, same dtype and device; C' is the model's output
        channel count (C for a denoiser).
    """
    c, h, w = image.shape
    if tile is None or (h <= tile and w <= tile):
        return apply_model(model, image.unsqueeze(0), sigma).squeeze(0)
    mult = int(getattr(model, "tile_multiple", 1))
    out: torch.Tensor | None = None
    ys, xs = tile_starts(h, tile, overlap, mult), tile_starts(w, tile, overlap, mult)
    # tile i spans [starts[i], ends[i]); the last one runs to the image border
    yend = [min(y + tile, h) for y in ys[:-1]] + [h]
    xend = [min(x + tile, w) for x in xs[:-1]] + [w]
    for iy, y in enumerate(ys):
        # rows this tile owns: from the middle of its overlap with the previous tile
        # to the middle of its overlap with the next one
        y0 = y if iy == 0 else (y + yend[iy - 1]) // 2
        y1 = h if iy == len(ys) - 1 else (ys[iy + 1] + yend[iy]) // 2
        for ix, x in enumerate(xs):
            x0 = x if ix == 0 else (x + xend[ix - 1]) // 2
            x1 = w if ix == len(xs) - 1 else (xs[ix + 1] + xend[ix]) // 2
            res = apply_model(model, image[:, y:yend[iy], x:xend[ix]].unsqueeze(0), sigma)
            if out is None:  # the model's output channels (1 for an edge map)
                out = image.new_empty((res.shape[1], h, w))
            out[:, y0:y1, x0:x1] = res.squeeze(0)[:, y0 - y:y1 - y, x0 - x:x1 - x]
    assert out is not None
    return out


class EdgeProbability(torch.nn.Module):
    """An edge detector's fused probability map: (N, 3, H, W) -> (N, 1, H, W)
    (for :func:`denoise`'s tiling)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.tile_multiple = int(getattr(model, "tile_multiple", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(x)[-1])
