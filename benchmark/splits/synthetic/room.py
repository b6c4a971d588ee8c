"""The static room behind the character: a wall with a structured wallpaper (stripes, dots, bricks,
diamonds or waves), framed pictures, windows, shelves with books, clocks and plants, a baseboard and
a floor of planks, tiles or carpet in perspective, under smooth lighting.

No per-pixel noise: a small VAE cannot learn it. Patterns have periods of 10-16 px and soft edges.
"""

from __future__ import annotations

import numpy as np

from .look import Look
from .primitives import hsv, rgb8, soft_band, soft_edge
from .spec import HEIGHT, SUPERSAMPLE, SyntheticSpec

# Edge width in frame pixels: soft enough that a 4x downsample keeps most of the image (the bound
# in the package docstring), sharp enough that the patterns stay visible.
ROOM_EDGE = 1.6

_WOOD = ((150, 100, 60), (184, 140, 96), (112, 72, 46), (204, 172, 124), (130, 112, 100))
_FRAMES = ((70, 45, 25), (190, 150, 60), (30, 30, 30), (235, 235, 228))


def make_room(rng: np.random.Generator, spec: SyntheticSpec, look: Look) -> np.ndarray:
    """The static background, float32 ``(H * ss, W * ss, 3)`` in [0, 1]: a patterned wall with
    objects on it and a floor, all in soft-edged shapes and smooth light."""
    ss, scale = SUPERSAMPLE, spec.height / HEIGHT
    x = ((np.arange(spec.width * ss) + 0.5) / ss - 0.5)[None, :]
    y = ((np.arange(spec.height * ss) + 0.5) / ss - 0.5)[:, None]
    edge = ROOM_EDGE
    horizon = look.floor_y - rng.uniform(12, 22) * scale

    wall_hue = rng.random()
    wall = np.broadcast_to(hsv(wall_hue, rng.uniform(0.12, 0.45), rng.uniform(0.55, 0.85)), (y.size, x.size, 3)).copy()
    accent = hsv(wall_hue + rng.choice([0.0, 0.08, 0.5]), rng.uniform(0.15, 0.5), rng.uniform(0.45, 0.9))
    period = rng.uniform(10, 16) * scale
    kind = int(rng.integers(5))
    phase_x, phase_y = rng.random(2)
    u, v = x / period + phase_x, y / period + phase_y
    if kind == 0:  # stripes
        mask = soft_band(u, rng.uniform(0.3, 0.6), edge / period) + 0 * v
    elif kind == 1:  # dots on a staggered grid
        shifted = u + 0.5 * (np.floor(v) % 2)
        distance = np.hypot(shifted - np.floor(shifted) - 0.5, v - np.floor(v) - 0.5) * period
        mask = soft_edge(distance - rng.uniform(2.5, 3.5) * scale, edge)
    elif kind == 2:  # bricks: mortar lines
        rows = v * 2
        shifted = u + 0.5 * (np.floor(rows) % 2)
        to_row = np.abs(rows - np.round(rows)) * period / 2
        to_joint = np.abs(shifted - np.round(shifted)) * period
        mask = soft_edge(np.minimum(to_row, to_joint) - 0.5, edge)
    elif kind == 3:  # diamonds
        distance = (np.abs(u - np.floor(u) - 0.5) + np.abs(v - np.floor(v) - 0.5)) * period
        mask = soft_edge(distance - rng.uniform(0.25, 0.4) * period, edge)
    else:  # waves
        mask = 0.5 + 0.5 * np.sin(2 * np.pi * (u + 0.3 * np.sin(2 * np.pi * v / 1.7)))
    wall += (accent - wall) * (rng.uniform(0.2, 0.35) * mask)[..., None]

    if rng.random() < 0.4:  # wainscot panel below a rail
        rail = horizon - rng.uniform(14, 24) * scale
        panel = soft_edge(rail - y, edge) + 0 * x
        wall += (wall * rng.uniform(0.7, 1.2) - wall) * panel[..., None]
        wall += (rgb8(*_FRAMES[int(rng.integers(4))]) - wall) * soft_edge(np.abs(y - rail) - 0.8, edge)[..., None] * np.ones_like(x)[..., None]
    for _ in range(int(rng.integers(1, 4))):
        _add_wall_object(wall, rng, x, y, horizon, scale, edge, spec.width)

    floor = _make_floor(rng, x, y, horizon, scale, edge, spec.width)
    baseboard = rng.uniform(1.5, 3.0) * scale
    image = np.where((y < horizon - baseboard)[..., None], wall, floor)
    board_colour = np.clip(wall[-1, 0] * rng.choice([0.75, 1.2]), 0, 1)
    board = soft_edge(np.abs(y - (horizon - baseboard / 2)) - baseboard / 2, edge) + 0 * x
    image += (board_colour - image) * board[..., None]
    floor_mask = soft_edge(horizon - y, edge) + 0 * x
    image *= (1 - 0.25 * np.exp(-np.maximum(y - horizon, 0) / (3 * scale)) * floor_mask)[..., None]

    lamp_x, lamp_y = rng.uniform(0, spec.width), rng.uniform(0, 0.5 * horizon)
    sigma = rng.uniform(18, 32) * scale
    light = 0.82 + 0.3 * np.exp(-((x - lamp_x) ** 2 + (y - lamp_y) ** 2) / (2 * sigma**2))
    light = light - 0.1 * ((x - spec.width / 2) / spec.width * 2) ** 2
    return np.clip(image * light[..., None], 0, 1).astype(np.float32)


def _rect_distance(x: np.ndarray, y: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Signed distance to an axis-aligned rectangle (negative inside)."""
    dx = np.maximum(x0 - x, x - x1)
    dy = np.maximum(y0 - y, y - y1)
    return np.hypot(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0)


def _paint(image: np.ndarray, coverage: np.ndarray, colour: np.ndarray) -> None:
    image += (np.asarray(colour, dtype=np.float32) - image) * np.broadcast_to(coverage, image.shape[:2])[..., None]


def _add_wall_object(wall: np.ndarray, rng: np.random.Generator, x: np.ndarray, y: np.ndarray, horizon: float, scale: float, edge: float, width: int) -> None:
    """One of: framed picture, window, shelf with books, clock, potted plant."""
    kind = int(rng.integers(5))
    draws = rng.random(8)
    if kind in (0, 1):  # picture or window
        w, h = (10 + 10 * draws[0]) * scale, (8 + 10 * draws[1]) * scale
        x0, y0 = draws[2] * (width - w), 3 * scale + draws[3] * max(1.0, horizon - h - 10 * scale)
        frame = rng.uniform(1.2, 2.2) * scale
        outer = _rect_distance(x, y, x0, y0, x0 + w, y0 + h)
        inner = _rect_distance(x, y, x0 + frame, y0 + frame, x0 + w - frame, y0 + h - frame)
        _paint(wall, soft_edge(outer, edge), rgb8(*_FRAMES[int(draws[4] * 4)]) if kind == 0 else rgb8(236, 236, 230))
        fraction = np.clip((y - y0) / h, 0, 1)
        if kind == 0:
            top, bottom = hsv(draws[5], 0.5, 0.9), hsv(draws[5] + 0.3, 0.6, 0.5)
        else:
            top, bottom = rgb8(150, 190, 235), rgb8(225, 235, 245)
        glass = (top + (bottom - top) * fraction[..., None]).astype(np.float32)
        inside = np.broadcast_to(soft_edge(inner, edge), wall.shape[:2])[..., None]
        wall += (glass - wall) * inside
        if kind == 0:  # a sun and a mountain
            sun = np.hypot(x - (x0 + w * (0.25 + 0.5 * draws[6])), y - (y0 + h * 0.35)) - 0.14 * min(w, h)
            _paint(wall, soft_edge(sun, edge) * soft_edge(inner, edge), hsv(0.12, 0.7, 1.0))
            peak_x = x0 + w * (0.3 + 0.4 * draws[7])
            mountain = np.maximum(np.abs(x - peak_x) * 0.8 - (y - (y0 + h * 0.4)), y - (y0 + h))
            _paint(wall, soft_edge(mountain, edge) * soft_edge(inner, edge), hsv(draws[5] + 0.35, 0.5, 0.4))
        else:  # window bars
            bars = np.minimum(np.abs(x - (x0 + w / 2)), np.abs(y - (y0 + h / 2))) - 0.6 * scale
            _paint(wall, soft_edge(bars, edge) * soft_edge(inner, edge), rgb8(236, 236, 230))
    elif kind == 2:  # shelf with books
        w = (16 + 14 * draws[0]) * scale
        x0, y0 = draws[1] * (width - w), (14 + draws[2] * max(1.0, horizon - 30 * scale))
        _paint(wall, soft_edge(_rect_distance(x, y, x0, y0, x0 + w, y0 + 1.6 * scale), edge), rgb8(*_WOOD[int(draws[3] * 5)]) * 0.8)
        position = x0 + 2 * scale
        for _ in range(int(2 + 3 * draws[4])):
            book_w, book_h = (3.0 + 2.0 * rng.random()) * scale, (5 + 3 * rng.random()) * scale
            colour = hsv(rng.random(), 0.4, rng.uniform(0.45, 0.8))
            _paint(wall, soft_edge(_rect_distance(x, y, position, y0 - book_h, position + book_w, y0), edge), colour)
            position += book_w + 0.3 * scale
    elif kind == 3:  # clock
        radius = (4 + 3 * draws[0]) * scale
        cx, cy = radius + draws[1] * (width - 2 * radius), radius + 3 * scale + draws[2] * max(1.0, horizon - 2 * radius - 12 * scale)
        distance = np.hypot(x - cx, y - cy)
        _paint(wall, soft_edge(distance - radius, edge), rgb8(*_FRAMES[int(draws[3] * 4)]))
        _paint(wall, soft_edge(distance - radius + 1.2 * scale, edge), rgb8(245, 242, 230))
        for angle, length in ((draws[4] * 2 * np.pi, 0.55), (draws[5] * 2 * np.pi, 0.8)):
            ex, ey = cx + length * radius * np.sin(angle), cy - length * radius * np.cos(angle)
            t = np.clip(((x - cx) * (ex - cx) + (y - cy) * (ey - cy)) / ((ex - cx) ** 2 + (ey - cy) ** 2), 0, 1)
            _paint(wall, soft_edge(np.hypot(x - cx - t * (ex - cx), y - cy - t * (ey - cy)) - 0.5 * scale, edge), rgb8(90, 84, 80))
    else:  # potted plant standing on the floor line
        cx = (5 + draws[0] * (width - 10)) * 1.0
        pot_h, pot_w = (5 + 3 * draws[1]) * scale, (4 + 2 * draws[2]) * scale
        pot = np.maximum(np.abs(x - cx) - (pot_w / 2) * (1 - 0.25 * (horizon - y) / pot_h), np.abs(y - (horizon - pot_h / 2)) - pot_h / 2)
        leaves = np.full(np.broadcast(x, y).shape, np.inf)
        for k in range(5):
            angle = (k - 2) * 0.45 + 0.2 * rng.standard_normal()
            length = (6 + 6 * rng.random()) * scale
            lx, ly = cx + 0.5 * length * np.sin(angle), horizon - pot_h - 0.5 * length * np.cos(angle)
            along = (x - lx) * np.sin(angle) - (y - ly) * np.cos(angle)
            across = (x - lx) * np.cos(angle) + (y - ly) * np.sin(angle)
            leaves = np.minimum(leaves, (np.hypot(along / (0.5 * length), across / (1.3 * scale)) - 1) * 1.3 * scale)
        _paint(wall, soft_edge(leaves, edge), hsv(0.3 + 0.08 * draws[3], 0.6, 0.45))
        _paint(wall, soft_edge(pot, edge), hsv(0.05 + 0.1 * draws[4], 0.55, 0.6))


def _make_floor(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, horizon: float, scale: float, edge: float, width: int) -> np.ndarray:
    """Planks, tiles or a carpet in perspective: rows get taller towards the camera."""
    vanishing = horizon - rng.uniform(25, 45) * scale
    below = np.maximum(y - vanishing, 1e-3)
    depth = (horizon - vanishing) / below  # 1 at the wall, smaller towards the camera
    rows = rng.uniform(3.0, 5.0) * (1 - depth) / (1 - (horizon - vanishing) / (y.max() - vanishing))
    across = (x - width / 2) * depth / (10 * scale)
    row_scale = np.abs(np.gradient(rows, axis=0)) + 1e-6  # rows per pixel, for soft edges in perspective
    kind = int(rng.integers(3))
    if kind == 0:
        base = rgb8(*_WOOD[int(rng.integers(5))])
        length = rng.uniform(2.0, 3.5)
        row = np.floor(rows)
        tint = 1 + 0.05 * np.sin(row * 12.9898 + rng.uniform(0, 6))
        seams = np.minimum(np.abs(rows - np.round(rows)) / row_scale, np.abs(((across / length + 0.5 * (row % 2)) + 0.5) % 1 - 0.5) * length * 10 * scale / depth)
        floor = base * tint[..., None] * (1 - 0.2 * soft_edge(seams - 0.4, edge))[..., None]
    elif kind == 1:
        light, dark = hsv(rng.random(), rng.uniform(0, 0.3), rng.uniform(0.7, 0.9)), hsv(rng.random(), rng.uniform(0.1, 0.4), rng.uniform(0.3, 0.5))
        checker = np.abs((np.floor(rows) + np.floor(across / 1.2)) % 2)
        floor = light + (dark - light) * (0.35 + 0.3 * checker)[..., None]
    else:
        colour = hsv(rng.random(), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.6))
        band = soft_band(rows * 0.5, 0.25, row_scale * edge) * (rows < 1.5)
        floor = colour * (1 + 0.18 * band)[..., None] * np.ones_like(x)[..., None]
    return np.broadcast_to(floor, (y.size, x.size, 3)).astype(np.float32)
