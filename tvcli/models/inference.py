"""Memory-bounded inference of image-to-image networks: overlapping tiles."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["denoise", "tile_starts"]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with at least
    ``overlap`` shared pixels between neighbours; the last tile ends at ``size``."""
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return starts


@torch.no_grad()
def denoise(model: nn.Module, image: torch.Tensor, tile: int | None = 512,
            overlap: int = 32) -> torch.Tensor:
    """Runs ``model`` over ``image`` in overlapping tiles.

    Each output pixel is taken from the tile in which it lies farthest from a
    tile border (no blending): with ``overlap`` at least the network's receptive
    radius (17 for DnCNN), tiles give the untiled result up to rounding.

    Args:
        model: maps (1, C, h, w) -> (1, C, h, w).
        image: (C, H, W) float tensor in [0, 1] on the model's device.
        tile: tile side in pixels; None runs the whole image at once.
        overlap: pixels shared by neighbouring tiles (even, >= 2x receptive radius
            for an exact seam).
    Returns:
        (C, H, W) tensor, same dtype and device.
    """
    c, h, w = image.shape
    if tile is None or (h <= tile and w <= tile):
        return model(image.unsqueeze(0)).squeeze(0)
    out = torch.empty_like(image)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    for iy, y in enumerate(ys):
        th = min(tile, h)
        # rows of this tile that it owns: from the middle of the overlap with the
        # previous tile to the middle of the overlap with the next one
        y0 = 0 if iy == 0 else (ys[iy - 1] + th + y) // 2 - y
        y1 = th if iy == len(ys) - 1 else (y + th + ys[iy + 1]) // 2 - y
        for ix, x in enumerate(xs):
            tw = min(tile, w)
            x0 = 0 if ix == 0 else (xs[ix - 1] + tw + x) // 2 - x
            x1 = tw if ix == len(xs) - 1 else (x + tw + xs[ix + 1]) // 2 - x
            res = model(image[:, y:y + th, x:x + tw].unsqueeze(0)).squeeze(0)
            out[:, y + y0:y + y1, x + x0:x + x1] = res[:, y0:y1, x0:x1]
    return out
