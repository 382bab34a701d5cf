"""Occupancy ground truth of a synthetic keyframe, in every layout `occprep.occupancy` reads.

The scene is voxelised in the format's frame (`configs/occ-*.json`: LIDAR_TOP or ego). Labels: in every
column, the voxel holding the ground plane (global z = GROUND_Z) is driveable surface; background
blocks and annotated boxes fill the voxels whose centre lies inside them, a later box winning over an
earlier one. Categories without a class of the format become 'others' in Occ3D, invalid voxels in
OpenOcc v1 and noise (label 0) in the SurroundOcc and OpenOccupancy voxel lists.

Visibility rule (`VisibilityRule`), the same for every layout: a voxel is unobserved by the LiDAR when
it lies in the shadow of a box (object or background block) seen from the LiDAR origin and no box
occupies it. Shadow of a box: the columns whose horizontal ray from the LiDAR origin enters the box
before reaching the column centre, up to `shadow_depth_m` beyond the point where the ray leaves the
box (real releases accumulate many sweeps along the drive, so only a band behind an occluder stays
unseen), from the ground layer up to the layer holding the box top. Voxels below the ground layer are
left free and observed: the world is empty there, and listing them would make the sparse invalid file
hundreds of thousands of indices per frame. The camera mask is the LiDAR mask within `camera_range_m`
(horizontal distance from the grid origin).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from occprep.config import OccupancyFormat
from occprep.fileio import atomic_write
from occprep.geometry import arctan2
from occprep.synth.spec import VisibilityRule

GROUND_Z = -0.05
"""Height (global frame, m) the ground layer's voxels contain: just below the road surface."""

_ARC_SAMPLES = 9
"""Points per outer shadow arc used to bound a shadow's candidate columns."""


@dataclass(frozen=True)
class Solid:
    """Boxes to voxelise, rows parallel: centre (n, 3) m, size (n, 3) w/l/h m, yaw (n,) rad, all in the
    global frame; `label` (n,) class id of the format, -1 = no class (invalid); `flow` (n, 2) m/s in the
    grid frame."""

    centre: np.ndarray
    size: np.ndarray
    yaw: np.ndarray
    label: np.ndarray
    flow: np.ndarray


@dataclass(frozen=True)
class Voxelised:
    """A labelled grid of shape `shape` (X, Y, Z), every per-voxel array flat in OpenOcc order
    (flat = z*X*Y + y*X + x): `label` (V,) uint8 (free label where empty), `box` (V,) int32 the box
    filling each voxel (-1 for none) and `box_flow` (n, 2) float32 each box's flow, m/s, grid frame;
    `observed` / `camera` (V,) bool masks, `unlabelled` (V,) bool for voxels of objects the format has
    no class for. `volume(a)` views a flat array as [x, y, z]."""

    shape: Tuple[int, int, int]
    free_label: int
    label: np.ndarray
    box: np.ndarray
    box_flow: np.ndarray
    observed: np.ndarray
    camera: np.ndarray
    unlabelled: np.ndarray

    def flow(self, flat: np.ndarray) -> np.ndarray:
        """(len(flat), 2) float32 flow of the voxels `flat`, m/s, grid frame; zero outside labelled boxes."""
        box = self.box[flat]
        labelled = (box >= 0) & ~self.unlabelled[flat]
        flow = np.zeros((len(flat), 2), dtype=np.float32)
        flow[labelled] = self.box_flow[box[labelled]]
        return flow

    def volume(self, flat: np.ndarray) -> np.ndarray:
        """`flat` (V, ...) as a view indexed [x, y, z, ...]."""
        x, y, z = self.shape
        return flat.reshape((z, y, x) + flat.shape[1:]).transpose((2, 1, 0) + tuple(range(3, flat.ndim + 2)))


@dataclass(frozen=True)
class Occupied:
    """The class-free part of a voxelisation, flat in OpenOcc order: `ground` (k,) the voxels holding the
    ground plane, `winner` (V,) int32 the box filling each voxel (-1 for none), `observed` / `camera` (V,)
    bool visibility masks."""

    ground: np.ndarray
    winner: np.ndarray
    observed: np.ndarray
    camera: np.ndarray


def _stacked(solids: List[Solid]) -> Solid:
    """`solids` as one Solid, rows in order."""
    return Solid(*(np.concatenate([getattr(s, f) for s in solids]) for f in Solid.__dataclass_fields__))


def _windows(lo: np.ndarray, hi: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Every integer point of the boxes [lo, hi) (n, d): owner row (m,) and point (m, d), owners ascending."""
    dims = np.maximum(hi - lo, 0)
    counts = dims.prod(axis=1)
    owner = np.repeat(np.arange(len(lo)), counts)
    rest = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    point = np.empty((len(owner), lo.shape[1]), dtype=np.int64)
    for axis in range(lo.shape[1] - 1):
        size = dims[owner, axis]
        point[:, axis] = lo[owner, axis] + rest % size
        rest //= size
    point[:, -1] = lo[owner, -1] + rest
    return owner, point


class Grid:
    """Voxel geometry of an occupancy format in its own frame."""

    def __init__(self, fmt: OccupancyFormat) -> None:
        self.fmt = fmt
        self.shape = tuple(fmt.grid)
        self.lower = np.array(fmt.point_cloud_range[:3], dtype=np.float64)
        """Grid corner, m, grid frame."""
        self.axes = [self.lower[a] + (np.arange(self.shape[a]) + 0.5) * fmt.voxel_size for a in range(3)]
        """Voxel centre coordinates along x, y, z, m, grid frame."""
        x, y = np.meshgrid(self.axes[0], self.axes[1], indexing="xy")
        self.column_xy = np.column_stack([x.ravel(), y.ravel()])
        """(X*Y, 2) column centres, m, grid frame, column = y*X + x."""

    def voxelise(self, grid_from_global: np.ndarray, solids: List[Solid], rule: VisibilityRule,
                 lidar_origin: Tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Voxelised:
        """Label the grid whose pose is `grid_from_global` (4x4) with `solids` in order; `lidar_origin`
        (3,) is the LiDAR position in the grid frame, m."""
        return self.label(self.occupy(grid_from_global, solids, rule, lidar_origin), solids)

    def occupy(self, grid_from_global: np.ndarray, solids: List[Solid], rule: VisibilityRule,
               lidar_origin: Tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Occupied:
        """Where the ground and `solids` are and what the LiDAR sees, whatever their classes: the same for
        every format of this grid's frame and geometry (see `voxelise`)."""
        nx, ny, nz = self.shape
        boxes = _stacked(solids)
        ground_layer = self._ground_layer(np.linalg.inv(grid_from_global))
        columns = np.flatnonzero((ground_layer >= 0) & (ground_layer < nz))
        winner = self._winners(grid_from_global, boxes)
        hit = winner >= 0
        shadow_top = self._shadow_top(grid_from_global, boxes, np.asarray(lidar_origin, dtype=np.float64), rule)
        floor = np.maximum(ground_layer, 0)
        shaded = np.flatnonzero(shadow_top >= floor)
        layer = np.arange(nz)[:, None]
        shadow_layer, shadow_column = np.nonzero((layer >= floor[shaded]) & (layer <= shadow_top[shaded]))
        observed = np.ones(len(winner), dtype=bool)
        observed[shaded[shadow_column] + nx * ny * shadow_layer] = False
        observed[hit] = True
        camera = observed.reshape(nz, nx * ny) & (np.hypot(*self.column_xy.T) <= rule.camera_range_m)
        return Occupied(ground_layer[columns] * nx * ny + columns, winner, observed, camera.ravel())

    def label(self, occupied: Occupied, solids: List[Solid]) -> Voxelised:
        """The classes of this grid's format on `occupied` (from the same `solids`, labelled for this format)."""
        fmt = self.fmt
        boxes = _stacked(solids)
        label = np.full(len(occupied.winner), fmt.free_label, dtype=np.uint8)
        label[occupied.ground] = fmt.classes.index("driveable_surface")
        hit = np.flatnonzero(occupied.winner >= 0)
        hit_label = boxes.label[occupied.winner[hit]]
        label[hit] = np.where(hit_label < 0, fmt.free_label, hit_label)
        unlabelled = np.zeros(label.shape, dtype=bool)
        unlabelled[hit] = hit_label < 0
        return Voxelised(self.shape, fmt.free_label, label, occupied.winner, boxes.flow.astype(np.float32),
                         occupied.observed, occupied.camera, unlabelled)

    def geometry(self) -> tuple:
        """What `occupy` depends on of the format: grids with equal geometry share their `Occupied`."""
        fmt = self.fmt
        return fmt.frame, tuple(fmt.point_cloud_range), fmt.voxel_size, tuple(fmt.grid)

    def _ground_layer(self, global_from_grid: np.ndarray) -> np.ndarray:
        """(X*Y,) layer holding the ground plane below each column centre (may lie outside [0, Z))."""
        a, b, c, d = global_from_grid[2]
        z = (GROUND_Z - d - self.column_xy @ np.array([a, b])) / c
        return np.floor((z - self.lower[2]) / self.fmt.voxel_size).astype(np.int64)

    def _corners(self, grid_from_global: np.ndarray, boxes: Solid) -> np.ndarray:
        """(n, 8, 3) box corners, m, grid frame."""
        sign = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
        half = boxes.size[:, [1, 0, 2]] / 2  # along (length), across (width), up (height)
        local = sign[None] * half[:, None]
        c, s = np.cos(boxes.yaw)[:, None], np.sin(boxes.yaw)[:, None]
        world = np.stack([local[..., 0] * c - local[..., 1] * s, local[..., 0] * s + local[..., 1] * c,
                          local[..., 2]], axis=-1) + boxes.centre[:, None]
        return world @ grid_from_global[:3, :3].T + grid_from_global[:3, 3]

    def _winners(self, grid_from_global: np.ndarray, boxes: Solid) -> np.ndarray:
        """(V,) int32: the last box whose inside holds each voxel centre, -1 for none.

        Per (box, column) pair of the box's footprint window, the layers inside the box form one
        interval (each box bound is linear in the voxel's grid z), so the test runs per column."""
        v, (nx, ny, nz) = self.fmt.voxel_size, self.shape
        corners = self._corners(grid_from_global, boxes)
        lo = np.maximum(np.floor((corners.min(1)[:, :2] - self.lower[:2]) / v).astype(np.int64), 0)
        hi = np.minimum(np.ceil((corners.max(1)[:, :2] - self.lower[:2]) / v).astype(np.int64), (nx, ny))
        owner, point = _windows(lo, hi)
        column = point[:, 0] + nx * point[:, 1]
        global_from_grid = np.linalg.inv(grid_from_global)
        c, s = np.cos(boxes.yaw), np.sin(boxes.yaw)
        box_from_global = np.stack([np.stack([c, s, np.zeros_like(c)], 1), np.stack([-s, c, np.zeros_like(c)], 1),
                                    np.broadcast_to([0.0, 0.0, 1.0], (len(c), 3))], 1)
        box_from_grid = box_from_global @ global_from_grid[:3, :3]  # rows: along, across, up
        base = self.column_xy[column] @ global_from_grid[:3, :2].T + global_from_grid[:3, 3]  # at grid z = 0
        offset = np.einsum("mij,mj->mi", box_from_global[owner], base - boxes.centre[owner])
        slope = box_from_grid[owner, :, 2]
        half = boxes.size[owner][:, [1, 0, 2]] / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            ends = np.stack([(-half - offset) / slope, (half - offset) / slope])
        level = np.where(np.abs(offset) <= half, np.inf, -np.inf)
        z_lo = np.where(slope == 0, -level, ends.min(0)).max(1)
        z_hi = np.where(slope == 0, level, ends.max(0)).min(1)
        k_lo = np.maximum(np.ceil((z_lo - self.lower[2]) / v - 0.5), 0)
        k_hi = np.minimum(np.floor((z_hi - self.lower[2]) / v - 0.5), nz - 1)
        filled = k_hi >= k_lo
        pair, layer = _windows(k_lo[filled, None].astype(np.int64), k_hi[filled, None].astype(np.int64) + 1)
        winner = np.full(nx * ny * nz, -1, dtype=np.int32)
        np.maximum.at(winner, column[filled][pair] + nx * ny * layer[:, 0], owner[filled][pair].astype(np.int32))
        return winner

    def _shadow_top(self, grid_from_global: np.ndarray, boxes: Solid, origin: np.ndarray,
                    rule: VisibilityRule) -> np.ndarray:
        """(X*Y,) highest layer of each column in some box's shadow (see the module docstring), -1 for none."""
        v, (nx, ny, nz) = self.fmt.voxel_size, self.shape
        corners = self._corners(grid_from_global, boxes)
        centre = corners.mean(1)
        top = corners[..., 2].max(1)
        yaw = boxes.yaw + np.arctan2(grid_from_global[1, 0], grid_from_global[0, 0])
        c, s = np.cos(yaw), np.sin(yaw)
        half = boxes.size[:, [1, 0]] / 2
        rel = origin[:2] - centre[:, :2]
        origin_local = np.column_stack([rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c])
        # Candidate columns: the box footprint and its shadow sector out to the farthest corner + depth.
        ray = corners[:, ::2, :2] - origin[:2]
        facing = arctan2(centre[:, 1] - origin[1], centre[:, 0] - origin[0])
        turn = (arctan2(ray[..., 1], ray[..., 0]) - facing[:, None] + np.pi) % (2 * np.pi) - np.pi
        reach = np.hypot(ray[..., 0], ray[..., 1]).max(1) + rule.shadow_depth_m
        angle = facing[:, None] + turn.min(1)[:, None] + np.ptp(turn, axis=1)[:, None] * np.linspace(0, 1, _ARC_SAMPLES)
        arc = origin[:2] + reach[:, None, None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
        extent = np.concatenate([corners[:, ::2, :2], arc], axis=1)
        lo = np.maximum(np.floor((extent.min(1) - self.lower[:2]) / v).astype(np.int64) - 1, 0)
        hi = np.minimum(np.ceil((extent.max(1) - self.lower[:2]) / v).astype(np.int64) + 1, (nx, ny))
        top_layer = np.minimum(np.ceil((top - self.lower[2]) / v).astype(np.int64) - 1, nz - 1)
        occluder = ~np.all(np.abs(origin_local) <= half, axis=1) & (top_layer >= 0)
        hi[~occluder] = lo[~occluder]
        owner, point = _windows(lo, hi)
        column = point[:, 0] + nx * point[:, 1]
        ray = self.column_xy[column] - origin[:2]
        ray_local = np.column_stack([ray[:, 0] * c[owner] + ray[:, 1] * s[owner],
                                     -ray[:, 0] * s[owner] + ray[:, 1] * c[owner]])
        # Slab test of the ray origin + t * ray (t = 1 at the column centre) against the box footprint.
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = np.stack([(-half[owner] - origin_local[owner]) / ray_local,
                              (half[owner] - origin_local[owner]) / ray_local])
        enter = bound.min(0).max(1)
        leave = bound.max(0).min(1)
        behind = (enter <= leave) & (enter > 0) & (enter < 1) & (
            (1 - leave) * np.hypot(ray[:, 0], ray[:, 1]) <= rule.shadow_depth_m)
        shadow_top = np.full(nx * ny, -1, dtype=np.int64)
        np.maximum.at(shadow_top, column[behind], top_layer[owner[behind]])
        return shadow_top


def class_ids(fmt: OccupancyFormat, names: List[Optional[str]]) -> np.ndarray:
    """Class id of each name in `fmt`: unknown names map to 'others' if the format has it, else -1."""
    fallback = fmt.classes.index("others") if "others" in fmt.classes else -1
    return np.array([fmt.classes.index(n) if n in fmt.classes else fallback for n in names], dtype=int)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as handle:
        np.save(handle, array, allow_pickle=False)


def write_openocc(folder: Path, frame_idx: int, vox: Voxelised) -> Dict[str, Path]:
    """`{frame_idx:03d}_occ.npy` (N,2) int32 [flat index, class] of occupied voxels (flat = z*X*Y + y*X + x,
    ascending), `_flow.npy` (N,2) float32 (vx, vy) row-aligned, `_invalid.npy` (M,) int32 flat indices of
    unobserved or unlabelled voxels. Returns the three paths by index-JSON key."""
    occupied = np.flatnonzero(vox.label != vox.free_label)
    occ = np.column_stack([occupied, vox.label[occupied]]).astype(np.int32)
    flow = vox.flow(occupied)
    invalid = np.flatnonzero(~vox.observed | vox.unlabelled).astype(np.int32)
    paths = {"occ_gt_path": folder / f"{frame_idx:03d}_occ.npy", "flow_gt_path": folder / f"{frame_idx:03d}_flow.npy",
             "occ_invalid_path": folder / f"{frame_idx:03d}_invalid.npy"}
    for key, array in (("occ_gt_path", occ), ("flow_gt_path", flow), ("occ_invalid_path", invalid)):
        _save_npy(paths[key], array)
    return paths


def _write_npz(path: Path, arrays: Dict[str, np.ndarray]) -> None:
    """`np.savez_compressed` of `arrays`, but with a fixed zip timestamp, so the bytes are reproducible, and
    the fastest deflate level (readers do not depend on it; it halves the writing of the flow grids)."""
    with atomic_write(path) as handle, zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue(), compresslevel=1)


def write_occ3d(path: Path, vox: Voxelised) -> None:
    """Occ3D `labels.npz`: `semantics`, `mask_lidar`, `mask_camera`, uint8 (X, Y, Z) indexed [x, y, z]."""
    _write_npz(path, {"semantics": vox.volume(vox.label), "mask_lidar": vox.volume(vox.observed.view(np.uint8)),
                      "mask_camera": vox.volume(vox.camera.view(np.uint8))})


def write_openocc_v2(path: Path, vox: Voxelised) -> None:
    """OpenOcc v2 `labels.npz`: `semantics` uint8 (X, Y, Z) and `flow` float32 (X, Y, Z, 2), m/s, grid frame,
    indexed [x, y, z]."""
    _write_npz(path, {"semantics": vox.volume(vox.label), "flow": vox.volume(vox.flow(np.arange(len(vox.label))))})


def write_voxel_list(path: Path, vox: Voxelised, order: str, dtype: type) -> None:
    """The occupied voxels as an (N, 4) `dtype` array of indices in `order` ('xyz': SurroundOcc; 'zyx':
    OpenOccupancy) and the label; voxels of objects the format has no class for get label 0 (noise)."""
    occupied = np.flatnonzero((vox.label != vox.free_label) | vox.unlabelled)
    nx, ny, _ = vox.shape
    index = {"x": occupied % nx, "y": occupied // nx % ny, "z": occupied // (nx * ny)}
    label = np.where(vox.unlabelled[occupied], 0, vox.label[occupied])
    _save_npy(path, np.column_stack([*(index[axis] for axis in order), label]).astype(dtype))
