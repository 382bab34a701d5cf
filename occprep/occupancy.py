"""Occupancy ground truth as releases lay it out: indexes by sample token, file location, checks.

Two layouts (see `configs/occ-*.json` for their grids and classes):

- `openocc-v1` (OccNet): `occ_gt_{split}.json` maps scene -> sample token -> the paths of three
  sparse `.npy` files (occupancy, flow, invalid voxels). The paths are taken as published.
- `occ3d` (Occ3D-nuScenes): a tree `gts/<scene>/<token>/labels.npz`, one dense file per sample.

Published paths may be relative to whatever directory the publisher worked in. `PathLocator` finds
them with one rule: an absolute path is itself; a relative path is tried against the current
directory first, then against the occupancy root and each of its parents, nearest first.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import msgspec
import numpy as np

from occprep.config import OccupancyFormat
from occprep.errors import OccprepError
from occprep.fileio import read_json

FORMATS = ("openocc-v1", "occ3d")

OCC3D_ARRAYS = ("semantics", "mask_lidar", "mask_camera")


@dataclass(frozen=True)
class GtSample:
    """One keyframe's ground truth entry in a release."""

    scene_name: str
    token: str
    paths: Dict[str, str]
    """Info key -> path as the release names it (the value written with `--path-style as-is`)."""


@dataclass(frozen=True)
class GtIndex:
    """The ground truth samples of one index JSON or gts/ tree, by sample token."""

    source: Path
    """The index JSON or the gts/ directory."""
    samples: Dict[str, GtSample]


@dataclass(frozen=True)
class GtLayout:
    """What a layout puts into an info and which of those paths are files to check."""

    info_keys: Tuple[str, ...]
    file_keys: Tuple[str, ...]
    """Keys whose paths name files (the rest name directories)."""
    check: Callable[[Dict[str, str], OccupancyFormat], List[str]]
    """Checks one sample's files (info key -> path); returns problems, each naming its file."""


class _OpenOccEntry(msgspec.Struct):
    """One sample of an OpenOcc v1 index JSON; other fields are ignored."""

    occ_gt_path: str
    flow_gt_path: str
    occ_invalid_path: str


def openocc_index_path(occ_root: Path, split: str) -> Path:
    """Where an OpenOcc v1 release keeps the index of `split`."""
    return Path(occ_root) / f"occ_gt_{split}.json"


def read_openocc_index(path: Path) -> GtIndex:
    """Read `occ_gt_{split}.json` ({scene: {token: {occ_gt_path, flow_gt_path, occ_invalid_path}}})."""
    path = Path(path)
    scenes = read_json(path, Dict[str, Dict[str, dict]])
    samples: Dict[str, GtSample] = {}
    for scene_name, entries in scenes.items():
        for token, raw in entries.items():
            try:
                entry = msgspec.convert(raw, _OpenOccEntry)
            except msgspec.ValidationError as exc:
                raise OccprepError(f"{path}: {scene_name} / {token}: {exc}") from None
            if token in samples:
                raise OccprepError(f"{path}: sample {token} is listed under both {samples[token].scene_name} "
                                   f"and {scene_name}; fix the index")
            samples[token] = GtSample(scene_name, token, {
                "occ_gt_path": entry.occ_gt_path,
                "flow_gt_path": entry.flow_gt_path,
                "occ_invalid_path": entry.occ_invalid_path,
            })
    return GtIndex(path, samples)


def scan_occ3d_tree(occ_root: str) -> GtIndex:
    """Index `gts/<scene>/<token>/` under `occ_root` (kept as typed) in one directory walk.

    `occ_gt_path` is `gts/<scene>/<token>/labels.npz` relative to the root (the challenge baseline's
    key); `occ_path` is the sample directory joined onto the root as typed (BEVDet/FlashOcc's key,
    e.g. `./data/nuscenes/gts/<scene>/<token>`; their loader appends `labels.npz`).
    """
    gts = Path(occ_root) / "gts"
    if not gts.is_dir():
        raise OccprepError(f"{occ_root}: no gts/ directory; pass as --occ-root the folder that holds "
                           "gts/<scene>/<token>/labels.npz (Occ3D layout)")
    samples: Dict[str, GtSample] = {}
    for scene in sorted(os.scandir(gts), key=lambda e: e.name):
        if not scene.is_dir():
            continue
        for sample in os.scandir(scene.path):
            if not sample.is_dir():
                continue
            token = sample.name
            if token in samples:
                raise OccprepError(f"{gts}: sample {token} is in both {samples[token].scene_name}/ and "
                                   f"{scene.name}/; remove one")
            relative = f"gts/{scene.name}/{token}"
            samples[token] = GtSample(scene.name, token, {
                "occ_gt_path": f"{relative}/labels.npz",
                "occ_path": os.path.join(occ_root, "gts", scene.name, token),
            })
    return GtIndex(gts, samples)


class PathLocator:
    """Finds published paths on disk: absolute as is; relative against the cwd, then the occ root's chain."""

    def __init__(self, occ_root: Path, cwd: Optional[Path] = None) -> None:
        root = Path(os.path.abspath(occ_root))
        self.anchors: Tuple[str, ...] = tuple(map(str, (Path(cwd or os.getcwd()), root, *root.parents)))
        self.root_name = f"{os.sep}{root.name}{os.sep}"

    def locate(self, text: str) -> Optional[str]:
        """The absolute, normalised location of `text` if it exists, else None (strings: this runs per file).

        A relative path that names the occupancy root's folder (`./data/occ_gt_release_v1_0/train/...`,
        as the release publishes them) is also tried from the root itself, wherever it was extracted.
        """
        for anchor in ("",) if os.path.isabs(text) else self.anchors:
            candidate = os.path.join(anchor, text)
            if os.path.exists(candidate):
                return os.path.normpath(candidate)
        at = f"{os.sep}{text}".rfind(self.root_name)
        if not os.path.isabs(text) and at >= 0:
            candidate = os.path.join(self.anchors[1], f"{os.sep}{text}"[at + len(self.root_name):])
            if os.path.exists(candidate):
                return os.path.normpath(candidate)
        return None

    def describe(self) -> str:
        """The search rule, for error messages."""
        return (f"looked relative to {self.anchors[0]} (cwd), then {self.anchors[1]} and its parents, and "
                f"after '{self.root_name.strip(os.sep)}/' from {self.anchors[1]}")


def _load_npy(path: str) -> np.ndarray:
    with open(path, "rb") as handle:
        return np.load(handle, allow_pickle=False)


def _index_problems(path: str, indices: np.ndarray, voxels: int) -> List[str]:
    if indices.size and (indices.min() < 0 or indices.max() >= voxels):
        return [f"{path}: voxel index out of range [0, {voxels}) (min {indices.min()}, max {indices.max()})"]
    return []


def check_openocc_sample(files: Dict[str, str], fmt: OccupancyFormat) -> List[str]:
    """OpenOcc v1: occupancy (N,2) int [flat index, class], flow (N,2) float row-aligned, invalid (M,) int."""
    voxels = int(np.prod(fmt.grid))
    problems: List[str] = []
    arrays: Dict[str, np.ndarray] = {}
    for key in ("occ_gt_path", "flow_gt_path", "occ_invalid_path"):
        try:
            arrays[key] = _load_npy(files[key])
        except Exception as exc:  # corrupt files raise ValueError, OSError, EOFError, ...
            problems.append(f"{files[key]}: not a readable .npy ({type(exc).__name__}: {exc})")
    occ, flow, invalid = (arrays.get(k) for k in ("occ_gt_path", "flow_gt_path", "occ_invalid_path"))
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


def check_occ3d_sample(files: Dict[str, str], fmt: OccupancyFormat) -> List[str]:
    """Occ3D: `labels.npz` with uint8 grids `semantics` (0..free label) and 0/1 `mask_lidar`, `mask_camera`."""
    path = files["occ_gt_path"]
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files if name in OCC3D_ARRAYS}
    except Exception as exc:  # corrupt archives raise BadZipFile, ValueError, OSError, ...
        return [f"{path}: not a readable .npz ({type(exc).__name__}: {exc})"]
    missing = [name for name in OCC3D_ARRAYS if name not in arrays]
    if missing:
        return [f"{path}: missing array(s) {', '.join(missing)}"]
    problems = []
    for name, array in arrays.items():
        if array.dtype != np.uint8 or array.shape != tuple(fmt.grid):
            problems.append(f"{path}: {name} must be uint8 {tuple(fmt.grid)}, got {array.dtype} {array.shape}")
            continue
        top = fmt.free_label if name == "semantics" else 1
        if array.max() > top:
            problems.append(f"{path}: {name} has value {array.max()} (allowed 0-{top})")
    return problems


LAYOUTS = {
    "openocc-v1": GtLayout(("occ_gt_path", "flow_gt_path", "occ_invalid_path"),
                           ("occ_gt_path", "flow_gt_path", "occ_invalid_path"), check_openocc_sample),
    "occ3d": GtLayout(("occ_gt_path", "occ_path"), ("occ_gt_path",), check_occ3d_sample),
}


def verify_samples(samples: Iterable[Dict[str, str]], layout: GtLayout, fmt: OccupancyFormat,
                   workers: int, progress: Callable[..., Iterable]) -> List[str]:
    """Open and check every sample's files on `workers` threads; returns all problems in input order.

    `progress` wraps the result iterator (e.g. `Reporter.progress`) and receives `total` and `desc`.
    """
    samples = list(samples)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(layout.check, samples, [fmt] * len(samples))
        return [problem for found in progress(results, total=len(samples), desc="verify", unit="sample")
                for problem in found]
