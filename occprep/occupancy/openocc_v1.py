"""OpenOcc v1 (OccNet, `occ_gt_release_v1_0`): `occ_gt_{split}.json` maps scene -> sample token -> the
paths of three sparse `.npy` files (occupancy, flow, invalid voxels), taken as published.

Info keys: `occ_gt_path`, `flow_gt_path`, `occ_invalid_path` (as OccNet's `tools/create_data_with_occ.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import msgspec
import numpy as np

from occprep.config import OccupancyFormat
from occprep.errors import OccprepError
from occprep.fileio import read_json
from occprep.occupancy.gt import GtIndex, GtLayout, GtSample, LidarKeyframes, load_npy, unreadable

KEYS = ("occ_gt_path", "flow_gt_path", "occ_invalid_path")


class _Entry(msgspec.Struct):
    """One sample of an OpenOcc v1 index JSON; other fields are ignored."""

    occ_gt_path: str
    flow_gt_path: str
    occ_invalid_path: str


def index_path(occ_root: Path, split: str) -> Path:
    """Where an OpenOcc v1 release keeps the index of `split`."""
    return Path(occ_root) / f"occ_gt_{split}.json"


def read_index(path: Path) -> GtIndex:
    """Read `occ_gt_{split}.json` ({scene: {token: {occ_gt_path, flow_gt_path, occ_invalid_path}}})."""
    path = Path(path)
    scenes = read_json(path, Dict[str, Dict[str, dict]])
    samples: Dict[str, GtSample] = {}
    for scene_name, entries in scenes.items():
        for token, raw in entries.items():
            try:
                entry = msgspec.convert(raw, _Entry)
            except msgspec.ValidationError as exc:
                raise OccprepError(f"{path}: {scene_name} / {token}: {exc}") from None
            if token in samples:
                raise OccprepError(f"{path}: sample {token} is listed under both {samples[token].scene_name} "
                                   f"and {scene_name}; fix the index")
            paths = {key: getattr(entry, key) for key in KEYS}
            samples[token] = GtSample(scene_name, token, paths, dict(paths))
    return GtIndex(path, samples)


def index(occ_root: str, split: str, lidar: Optional[LidarKeyframes] = None) -> GtIndex:
    """The release's index of `split`, with a hint when the root holds no index."""
    path = index_path(Path(occ_root), split)
    if not path.is_file():
        raise OccprepError(f"{path}: index file not found; OpenOcc v1 releases ship occ_gt_{{train,val}}.json in "
                           "their root")
    return read_index(path)


def _index_problems(path: str, indices: np.ndarray, voxels: int) -> List[str]:
    if indices.size and (indices.min() < 0 or indices.max() >= voxels):
        return [f"{path}: voxel index out of range [0, {voxels}) (min {indices.min()}, max {indices.max()})"]
    return []


def check(files: Dict[str, str], fmt: OccupancyFormat) -> List[str]:
    """Occupancy (N,2) int [flat index, class], flow (N,2) float row-aligned, invalid (M,) int."""
    voxels = int(np.prod(fmt.grid))
    problems: List[str] = []
    arrays: Dict[str, np.ndarray] = {}
    for key in KEYS:
        try:
            arrays[key] = load_npy(files[key])
        except Exception as exc:  # corrupt files raise ValueError, OSError, EOFError, ...
            problems.append(unreadable(files[key], exc))
    occ, flow, invalid = (arrays.get(k) for k in KEYS)
    if occ is not None:
        path = files["occ_gt_path"]
        if occ.ndim != 2 or occ.shape[1] != 2 or occ.dtype.kind not in "iu":
            problems.append(f"{path}: occupancy must be an integer (N,2) array, got {occ.dtype} {occ.shape}")
            occ = None
        else:
            problems += _index_problems(path, occ[:, 0], voxels)
            classes = occ[:, 1]
            if classes.size and (classes.min() < 0 or classes.max() >= len(fmt.classes)):
                problems.append(f"{path}: class out of range 0-{len(fmt.classes) - 1} "
                                f"(min {classes.min()}, max {classes.max()})")
    if flow is not None:
        path = files["flow_gt_path"]
        if flow.ndim != 2 or flow.shape[1] != 2 or flow.dtype.kind != "f":
            problems.append(f"{path}: flow must be a float (N,2) array, got {flow.dtype} {flow.shape}")
        elif occ is not None and len(flow) != len(occ):
            problems.append(f"{path}: {len(flow)} flow rows for {len(occ)} occupied voxels (must be row-aligned)")
    if invalid is not None:
        path = files["occ_invalid_path"]
        if invalid.ndim != 1 or invalid.dtype.kind not in "iu":
            problems.append(f"{path}: invalid voxels must be a 1-D integer array, got {invalid.dtype} {invalid.shape}")
        else:
            problems += _index_problems(path, invalid, voxels)
    return problems


def dense(sparse: np.ndarray, fmt: OccupancyFormat) -> np.ndarray:
    """(X, Y, Z) uint8 grid of a sparse (N, 2) [flat index, class] array (flat = z*X*Y + y*X + x)."""
    nx, ny, nz = fmt.grid
    flat = np.full(nx * ny * nz, fmt.free_label, dtype=np.uint8)
    flat[sparse[:, 0].astype(np.int64)] = sparse[:, 1]
    return flat.reshape(nz, ny, nx).transpose(2, 1, 0)


def labels(path: str, fmt: OccupancyFormat) -> np.ndarray:
    """The dense grid of an occupancy `.npy`."""
    return dense(load_npy(path), fmt)


def named_file(info: dict, occ_root: Optional[str] = None) -> Optional[str]:
    """The info's `occ_gt_path` when it names an `.npy`."""
    value = info.get("occ_gt_path")
    return value if isinstance(value, str) and value.endswith(".npy") else None


LAYOUT = GtLayout("openocc-v1", KEYS, {key: (key, False) for key in KEYS}, index, per_split=True, needs_lidar=False,
                  check=check, label_role="occ_gt_path", labels=labels, named_file=named_file)
