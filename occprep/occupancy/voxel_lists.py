"""Sparse voxel lists named by the keyframe's LiDAR reading: one `.npy` of occupied voxels per sample.

- `surroundocc` (SurroundOcc): `samples/<LiDAR file name>.npy`, an integer (N, 4) array
  `[x, y, z, label]` of voxel indices in its 200 x 200 x 16 LiDAR-frame grid; label 0 is noise, 1-16
  the classes; unlisted voxels are empty. Info keys: `occ_path` = the file joined onto the root as
  typed (the released pickles' `.../nuscenes_occ/samples/<file>.npy`) and `lidar_token`.
- `openoccupancy` (OpenOccupancy's nuScenes-Occupancy): `scene_<scene token>/occupancy/<LiDAR
  sample_data token>.npy`, (N, 4) `[z, y, x, label]` (or (N, 7) with a velocity before the label) in
  its 512 x 512 x 40 grid; same labels. Its loader finds the file from the info's `scene_token` and
  `lidar_token` and a configured root, so the infos name no path. Info keys: `scene_token`,
  `lidar_token` and `lidarseg` (the keyframe's lidarseg `.bin`, which the loader forwards unused; None
  when the dataset has no lidarseg table).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from occprep.config import OccupancyFormat
from occprep.errors import OccprepError
from occprep.occupancy.gt import GtIndex, GtLayout, GtSample, LidarKeyframes, load_npy, scene_folders, unreadable

VOXELS = "voxels"
"""The file role of both layouts."""
SCENE_PREFIX = "scene_"


def _need(lidar: Optional[LidarKeyframes], name: str) -> LidarKeyframes:
    if lidar is None:
        raise OccprepError(f"{name} names its files by LiDAR reading: pass --root-path (the nuScenes folder with "
                           "the infos' version) so the tables give each sample's reading")
    return lidar


def surroundocc_index(occ_root: str, split: str = "", lidar: Optional[LidarKeyframes] = None) -> GtIndex:
    """The files of `samples/` under `occ_root` (as typed) whose LiDAR file is a keyframe of `lidar`
    (files of other readings belong to samples the tables do not hold)."""
    by_file = {k.lidar_file: k for k in _need(lidar, "surroundocc").values()}
    folder = Path(occ_root) / "samples"
    if not folder.is_dir():
        raise OccprepError(f"{occ_root}: no samples/ folder; pass as --occ-root the folder that holds "
                           "samples/<LiDAR file name>.npy (SurroundOcc layout, e.g. data/nuscenes_occ)")
    samples = {}
    for entry in os.scandir(folder):
        keyframe = by_file.get(entry.name[:-len(".npy")]) if entry.name.endswith(".npy") else None
        if keyframe is not None:
            path = os.path.join(occ_root, "samples", entry.name)
            samples[keyframe.sample_token] = GtSample(keyframe.scene_name, keyframe.sample_token, {VOXELS: path},
                                                      {"occ_path": path, "lidar_token": keyframe.lidar_token})
    return GtIndex(folder, dict(sorted(samples.items())))


def openoccupancy_index(occ_root: str, split: str = "", lidar: Optional[LidarKeyframes] = None) -> GtIndex:
    """The files of `scene_*/occupancy/` under `occ_root` (as typed) that are LiDAR keyframes of `lidar`."""
    by_reading = {k.lidar_token: k for k in _need(lidar, "openoccupancy").values()}
    samples = {}
    for scene, scene_path in scene_folders(Path(occ_root)):
        folder = Path(scene_path) / "occupancy"
        if not scene.startswith(SCENE_PREFIX) or not folder.is_dir():
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            keyframe = by_reading.get(entry.name[:-len(".npy")]) if entry.name.endswith(".npy") else None
            if keyframe is None:
                continue
            if scene != SCENE_PREFIX + keyframe.scene_token:
                raise OccprepError(f"{entry.path}: LiDAR reading {keyframe.lidar_token} belongs to scene "
                                   f"{keyframe.scene_token} ({keyframe.scene_name}) in the tables, not {scene}; the "
                                   "release and the tables disagree")
            path = os.path.join(occ_root, scene, "occupancy", entry.name)
            samples[keyframe.sample_token] = GtSample(
                keyframe.scene_name, keyframe.sample_token, {VOXELS: path},
                {"scene_token": keyframe.scene_token, "lidar_token": keyframe.lidar_token, "lidarseg": keyframe.lidarseg})
    return GtIndex(Path(occ_root), samples)


def _check(path: str, fmt: OccupancyFormat, columns: tuple, order: str) -> List[str]:
    """An integer-valued (N, columns) voxel list whose index columns (`order` of 'xyz') fit the grid and
    whose last column is a label 0..len(classes)-1."""
    try:
        voxels = load_npy(path)
    except Exception as exc:  # corrupt files raise ValueError, OSError, EOFError, ...
        return [unreadable(path, exc)]
    shapes = " or ".join(f"(N,{c})" for c in columns)
    if voxels.ndim != 2 or voxels.shape[1] not in columns or voxels.dtype.kind not in "iuf":
        return [f"{path}: must be a numeric {shapes} array [{', '.join(order)}, ..., label], got "
                f"{voxels.dtype} {voxels.shape}"]
    indices = voxels[:, [*range(len(order)), -1]]
    if voxels.dtype.kind == "f" and not np.array_equal(indices, np.floor(indices)):
        return [f"{path}: voxel indices and labels must be whole numbers"]
    problems = []
    for column, axis in enumerate(order):
        size = fmt.grid["xyz".index(axis)]
        values = indices[:, column]
        if values.size and (values.min() < 0 or values.max() >= size):
            problems.append(f"{path}: {axis} index out of range [0, {size}) (min {values.min()}, max {values.max()})")
    label = indices[:, -1]
    if label.size and (label.min() < 0 or label.max() >= len(fmt.classes)):
        problems.append(f"{path}: label out of range 0-{len(fmt.classes) - 1} (min {label.min()}, max {label.max()})")
    return problems


def check_surroundocc(files: Dict[str, str], fmt: OccupancyFormat) -> List[str]:
    """An integer (N, 4) `[x, y, z, label]` list inside the grid."""
    return _check(files[VOXELS], fmt, (4,), "xyz")


def check_openoccupancy(files: Dict[str, str], fmt: OccupancyFormat) -> List[str]:
    """An (N, 4) `[z, y, x, label]` (or (N, 7) with a velocity) list of whole numbers inside the grid."""
    return _check(files[VOXELS], fmt, (4, 7), "zyx")


def _dense(voxels: np.ndarray, fmt: OccupancyFormat, order: str) -> np.ndarray:
    """(X, Y, Z) uint8 grid of a voxel list, free where unlisted; rows outside the grid are left out."""
    grid = np.full(tuple(fmt.grid), fmt.free_label, dtype=np.uint8)
    index = (voxels[:, :3] if order == "xyz" else voxels[:, [2, 1, 0]]).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.array(fmt.grid)), axis=1)
    grid[tuple(index[inside].T)] = voxels[inside, -1]
    return grid


def surroundocc_labels(path: str, fmt: OccupancyFormat) -> np.ndarray:
    return _dense(load_npy(path), fmt, "xyz")


def openoccupancy_labels(path: str, fmt: OccupancyFormat) -> np.ndarray:
    return _dense(load_npy(path), fmt, "zyx")


def surroundocc_file(info: dict, occ_root: Optional[str] = None) -> Optional[str]:
    """`occ_path` when it names an `.npy`."""
    value = info.get("occ_path")
    return value if isinstance(value, str) and value.endswith(".npy") else None


def openoccupancy_file(info: dict, occ_root: Optional[str] = None) -> Optional[str]:
    """`<occ root>/scene_<scene_token>/occupancy/<lidar_token>.npy` for an info with `lidarseg` (the key only
    this layout adds); it needs the root (`show --occ-root`)."""
    if "lidarseg" not in info or not isinstance(info.get("lidar_token"), str):
        return None
    if occ_root is None:
        raise OccprepError("this info names nuScenes-Occupancy ground truth by scene and LiDAR token: pass --occ-root "
                           "(the folder that holds scene_<token>/occupancy/) or --no-occupancy")
    return os.path.join(occ_root, f"{SCENE_PREFIX}{info.get('scene_token')}", "occupancy", f"{info['lidar_token']}.npy")


SURROUNDOCC = GtLayout("surroundocc", ("occ_path", "lidar_token"), {"occ_path": (VOXELS, False)}, surroundocc_index,
                       per_split=False, needs_lidar=True, check=check_surroundocc, label_role=VOXELS,
                       labels=surroundocc_labels, named_file=surroundocc_file)
OPENOCCUPANCY = GtLayout("openoccupancy", ("scene_token", "lidar_token", "lidarseg"), {}, openoccupancy_index,
                         per_split=False, needs_lidar=True, check=check_openoccupancy, label_role=VOXELS,
                         labels=openoccupancy_labels, named_file=openoccupancy_file)
