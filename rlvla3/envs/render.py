"""Numpy-only rasteriser for the tabletop.

Image convention: row 0 is the top (y = +1), column 0 is the left (x = -1).
Speed tricks: pixel-centre coordinates are precomputed once; every shape is
drawn only inside its bounding box; the static layer (table + zones) is cached
per zone layout, so a frame is one 12 KB copy plus a few tiny slice writes.
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np

from .sim import BLOCK_HALF, GRIPPER_RADIUS, ZONE_RADIUS, SimState

# Saturated, well-separated colours so a small CNN can tell them apart.
BACKGROUND = (200, 200, 200)
BLOCK_RGB = ((220, 30, 30), (30, 170, 40), (30, 60, 230))  # red, green, blue
ZONE_RGB = ((245, 215, 40), (160, 60, 200))  # yellow, purple
GRIPPER_OPEN_RGB = (255, 255, 255)  # white ring
GRIPPER_CLOSED_RGB = (20, 20, 20)  # black filled disk
_RING_INNER = 0.5  # open-gripper ring: inner radius as a fraction of the outer


class Renderer:
    def __init__(self, size: int):
        self.size = size
        self._px = 2.0 / size
        # pixel centres along x (columns) and y (rows, decreasing downwards)
        self._xs = (-1.0 + (np.arange(size) + 0.5) * self._px).astype(np.float32)
        self._ys = (1.0 - (np.arange(size) + 0.5) * self._px).astype(np.float32)
        self._static: Dict[Tuple[float, ...], np.ndarray] = {}

    # -- index helpers: inclusive pixel range whose centres lie within [c-h, c+h]
    def _cols(self, cx: float, h: float) -> Tuple[int, int]:
        j0 = max(0, math.ceil((cx - h + 1.0) / self._px - 0.5))
        j1 = min(self.size - 1, math.floor((cx + h + 1.0) / self._px - 0.5))
        return j0, j1 + 1

    def _rows(self, cy: float, h: float) -> Tuple[int, int]:
        i0 = max(0, math.ceil((1.0 - cy - h) / self._px - 0.5))
        i1 = min(self.size - 1, math.floor((1.0 - cy + h) / self._px - 0.5))
        return i0, i1 + 1

    def _square(self, img: np.ndarray, cx: float, cy: float, h: float, rgb) -> None:
        i0, i1 = self._rows(cy, h)
        j0, j1 = self._cols(cx, h)
        if i0 < i1 and j0 < j1:
            img[i0:i1, j0:j1] = rgb

    def _disk(self, img: np.ndarray, cx: float, cy: float, r: float, rgb, r_in: float = 0.0) -> None:
        i0, i1 = self._rows(cy, r)
        j0, j1 = self._cols(cx, r)
        if i0 >= i1 or j0 >= j1:
            return
        dy = self._ys[i0:i1, None] - cy
        dx = self._xs[None, j0:j1] - cx
        d2 = dy * dy + dx * dx
        mask = d2 <= r * r
        if r_in > 0.0:
            mask &= d2 >= r_in * r_in
        img[i0:i1, j0:j1][mask] = rgb

    def _static_layer(self, zones) -> np.ndarray:
        key = tuple(v for z in zones for v in z)
        layer = self._static.get(key)
        if layer is None:
            if len(self._static) > 256:  # zone layouts come from a finite init-state set
                self._static.clear()
            layer = np.empty((self.size, self.size, 3), np.uint8)
            layer[:] = BACKGROUND
            for (zx, zy), rgb in zip(zones, ZONE_RGB):
                self._disk(layer, zx, zy, ZONE_RADIUS, rgb)
            self._static[key] = layer
        return layer

    def render(self, s: SimState) -> np.ndarray:
        img = self._static_layer(s.zones).copy()
        # the held block is drawn last so it appears lifted above the others
        order = [i for i in range(len(s.blocks)) if i != s.held] + ([s.held] if s.held >= 0 else [])
        for i in order:
            bx, by = s.blocks[i]
            self._square(img, bx, by, BLOCK_HALF, BLOCK_RGB[i])
        gx, gy = s.gripper
        if s.closed:
            self._disk(img, gx, gy, GRIPPER_RADIUS, GRIPPER_CLOSED_RGB)
        else:
            # ring, widened to at least ~1 px so it stays visible at small sizes
            r_in = min(GRIPPER_RADIUS * _RING_INNER, max(0.0, GRIPPER_RADIUS - self._px))
            self._disk(img, gx, gy, GRIPPER_RADIUS, GRIPPER_OPEN_RGB, r_in)
        return img
