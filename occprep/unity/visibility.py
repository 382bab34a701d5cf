"""How much of a Unity object a camera sees, as a nuScenes visibility token ("1" … "4").

The visible fraction of a box in one camera is its rendered visible pixels (the rendered object
info metric) over the pixel area of the box's silhouette, the 3D box projected through that
camera and clipped to the image: occlusion counts, the image border does not. Without the metric
the fraction is the share of the silhouette that lies inside the image (truncation only).
The silhouette of a convex box is tiled exactly once by its faces turned away from the camera
(each ray through it leaves the box once), which also holds once the box is cut at the near
plane; so its area is the sum of those faces' projected areas, every face clipped with a
vectorised Sutherland–Hodgman pass.
"""

from __future__ import annotations

import itertools

import numpy as np

from occprep.unity import convert

VISIBILITY_LEVELS = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))
"""nuScenes visibility tokens and levels: the visible fraction of the object, in per cent."""
LEVEL_EDGES = np.array([0.4, 0.6, 0.8])
NEAR = 1e-3
"""Near plane, m: the part of a box closer to (or behind) the camera is cut off before projecting."""

CORNER_SIGNS = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
"""(8, 3) corner k of a box at centre + size/2 · CORNER_SIGNS[k] (box axes)."""
FACES = np.array([[0, 1, 3, 2], [4, 5, 7, 6], [0, 1, 5, 4], [2, 3, 7, 6], [0, 2, 6, 4], [1, 3, 7, 5]])
"""(6, 4) corner indices of the faces −x, +x, −y, +y, −z, +z, each in order around the face."""
FACE_NORMALS = np.array([[-1.0, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]])
"""(6, 3) outward normals of FACES, box axes."""


def box_faces(values: np.ndarray) -> np.ndarray:
    """(N, 6, 4, 3) face corners, nuScenes camera frame (x right, y down, z forward), m, of (N, 10)
    boxes stored in a Unity camera frame: centre (x, y, z), size (x, y, z), rotation (x, y, z, w)."""
    centre, half, q = values[:, None, 0:3], values[:, None, 3:6] / 2, values[:, None, 6:10]
    corners = centre + convert.rotate_xyzw(q, CORNER_SIGNS * half)
    return convert.camera_point_to_nuscenes(corners)[:, FACES]


def back_faces(values: np.ndarray) -> np.ndarray:
    """(N, 6) bool: the faces of (N, 10) boxes turned away from the camera at the origin."""
    q, half = values[:, None, 6:10], values[:, None, 3:6] / 2
    normal = convert.rotate_xyzw(q, np.broadcast_to(FACE_NORMALS, (len(values), 6, 3)))
    centre = values[:, None, 0:3] + convert.rotate_xyzw(q, FACE_NORMALS * half)
    return np.einsum("nfi,nfi->nf", normal, centre) > 0


def clip_polygons(polygons: np.ndarray, normal: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(M, K, D) convex polygons (vertices in order, repeats allowed) ∩ the half-space `normal · p ≥ offset`.

    Returns (M, K + 1, D): each edge yields its start (if inside) and its crossing (if any), at most
    K + 1 vertices for a convex polygon; unused slots repeat the last kept vertex, so they add no
    area. A polygon wholly outside becomes a single point repeated (the origin).
    """
    m, k, _ = polygons.shape
    distance = polygons @ normal - np.broadcast_to(offset, (m,))[:, None]
    following, distance_next = np.roll(polygons, -1, axis=1), np.roll(distance, -1, axis=1)
    inside = distance >= 0
    crosses = inside != (distance_next >= 0)
    t = distance / np.where(crosses, distance - distance_next, 1.0)
    crossing = polygons + t[..., None] * (following - polygons)
    out = np.stack([polygons, crossing], axis=2).reshape(m, 2 * k, -1)
    keep = np.stack([inside, crosses], axis=2).reshape(m, 2 * k)
    kept_first = np.argsort(~keep, axis=1, kind="stable")
    last = np.maximum(keep.sum(axis=1) - 1, 0)[:, None]
    index = np.take_along_axis(kept_first, np.minimum(np.arange(k + 1), last), axis=1)
    out = np.take_along_axis(out, index[..., None], axis=1)
    out[~keep.any(axis=1)] = 0.0
    return out


def polygon_area(polygons: np.ndarray) -> np.ndarray:
    """(M,) areas of (M, K, 2) simple polygons (shoelace)."""
    x, y = polygons[..., 0], polygons[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))


def silhouette_area(values: np.ndarray, intrinsic: np.ndarray, width: np.ndarray, height: np.ndarray,
                    clip_to_image: bool = True) -> np.ndarray:
    """(N,) pixel area of (N, 10) boxes (Unity camera frame, see `box_faces`) projected through
    (N, 3, 3) pixel camera matrices, optionally clipped to the `width` × `height` images."""
    n = len(values)
    box, face = np.nonzero(back_faces(values))
    polygons = clip_polygons(box_faces(values)[box, face], np.array([0.0, 0.0, 1.0]), np.array(NEAR))
    k = intrinsic[box]
    z = np.maximum(polygons[..., 2], NEAR)
    pixels = np.stack([k[:, None, 0, 0] * polygons[..., 0] / z + k[:, None, 0, 2],
                       k[:, None, 1, 1] * polygons[..., 1] / z + k[:, None, 1, 2]], axis=-1)
    if clip_to_image:
        for normal, limit in (([1.0, 0.0], 0.0), ([0.0, 1.0], 0.0), ([-1.0, 0.0], -width), ([0.0, -1.0], -height)):
            pixels = clip_polygons(pixels, np.array(normal), np.broadcast_to(limit, (n,))[box])
    return np.bincount(box, weights=polygon_area(pixels), minlength=n)


def visible_fraction(values: np.ndarray, intrinsic: np.ndarray, width: np.ndarray, height: np.ndarray,
                     visible_pixels: np.ndarray) -> np.ndarray:
    """(N,) visible share in [0, 1] of (N, 10) boxes in their cameras (see `silhouette_area`).

    `visible_pixels` ≥ 0: pixels over the in-image silhouette area (a box drawn with no silhouette
    in the image counts as fully visible); −1 (no metric): in-image over whole silhouette area.
    """
    in_image = silhouette_area(values, intrinsic, width, height)
    measured = visible_pixels >= 0
    whole = silhouette_area(values, intrinsic, width, height, clip_to_image=False) if not measured.all() else in_image
    numerator = np.where(measured, visible_pixels, in_image)
    denominator = np.where(measured, in_image, whole)
    share = np.divide(numerator, denominator, out=(numerator > 0).astype(float), where=denominator > 0)
    return np.clip(share, 0.0, 1.0)


def visibility_token(fraction: np.ndarray) -> np.ndarray:
    """(N,) visibility tokens "1" … "4" of visible fractions in [0, 1] (bins 0-40-60-80-100 %)."""
    return np.array([t for t, _ in VISIBILITY_LEVELS])[np.searchsorted(LEVEL_EDGES, fraction, side="right")]
