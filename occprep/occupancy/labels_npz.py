"""Dense `labels.npz` trees, one folder per sample: `<folder>/<scene>/<token>/labels.npz`.

- `occ3d` (Occ3D-nuScenes): `gts/`; arrays `semantics`, `mask_lidar`, `mask_camera`, uint8 (200, 200, 16).
  Info keys: `occ_gt_path` = `gts/<scene>/<token>/labels.npz` relative to the root (the challenge
  baseline's key) and `occ_path` = the sample folder joined onto the root as typed (BEVDet/FlashOcc's
  key, e.g. `./data/nuscenes/gts/<scene>/<token>`; their loader appends `labels.npz`).
- `openocc-v2` (OpenOcc v2, the CVPR 2024 occupancy-and-flow release): `openocc_v2/`; arrays `semantics`
  uint8 (200, 200, 16) and `flow` float (200, 200, 16, 2). Info key: `occ_path` = the file joined onto
  the root as typed (`./data/nuscenes/openocc_v2/<scene>/<token>/labels.npz`: OccNet's `challenge`
  branch loads it as is, and loads zeros when it is not there).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from occprep.config import OccupancyFormat
from occprep.errors import OccprepError
from occprep.occupancy.gt import GtIndex, GtLayout, GtSample, LidarKeyframes, scene_folders, unreadable

LABELS = "labels.npz"


def _scan(occ_root: str, folder: str, name: str) -> Tuple[Path, Dict[str, Tuple[str, str]]]:
    """(the tree's folder, token -> (scene, sample folder joined onto the root as typed)) in one walk."""
    tree = Path(occ_root) / folder
    if not tree.is_dir():
        raise OccprepError(f"{occ_root}: no {folder}/ folder; pass as --occ-root the folder that holds "
                           f"{folder}/<scene>/<token>/labels.npz ({name} layout)")
    samples: Dict[str, Tuple[str, str]] = {}
    for scene, scene_path in scene_folders(tree):
        for token, _ in scene_folders(Path(scene_path)):
            if token in samples:
                raise OccprepError(f"{tree}: sample {token} is in both {samples[token][0]}/ and {scene}/; remove one")
            samples[token] = (scene, os.path.join(occ_root, folder, scene, token))
    return tree, samples


def occ3d_index(occ_root: str, split: str = "", lidar: Optional[LidarKeyframes] = None) -> GtIndex:
    """Every sample of the `gts/` tree under `occ_root` (as typed)."""
    tree, found = _scan(occ_root, "gts", "Occ3D")
    return GtIndex(tree, {token: GtSample(scene, token, {"labels": os.path.join(folder, LABELS)},
                                          {"occ_gt_path": f"gts/{scene}/{token}/{LABELS}", "occ_path": folder})
                          for token, (scene, folder) in found.items()})


def openocc_v2_index(occ_root: str, split: str = "", lidar: Optional[LidarKeyframes] = None) -> GtIndex:
    """Every sample of the `openocc_v2/` tree under `occ_root` (as typed)."""
    tree, found = _scan(occ_root, "openocc_v2", "OpenOcc v2")
    samples = {}
    for token, (scene, folder) in found.items():
        path = os.path.join(folder, LABELS)
        samples[token] = GtSample(scene, token, {"labels": path}, {"occ_path": path})
    return GtIndex(tree, samples)


def _arrays(path: str, names: Tuple[str, ...]) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """The arrays `names` of an `.npz`, and the problems (unreadable, missing arrays)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files if name in names}
    except Exception as exc:  # corrupt archives raise BadZipFile, ValueError, OSError, ...
        return {}, [unreadable(path, exc)]
    missing = [name for name in names if name not in arrays]
    return arrays, ([f"{path}: missing array(s) {', '.join(missing)}"] if missing else [])


def _grid_problems(path: str, name: str, array: np.ndarray, shape: tuple, top: int) -> List[str]:
    if array.dtype != np.uint8 or array.shape != shape:
        return [f"{path}: {name} must be uint8 {shape}, got {array.dtype} {array.shape}"]
    if array.max() > top:
        return [f"{path}: {name} has value {array.max()} (allowed 0-{top})"]
    return []


def check_occ3d(files: Dict[str, str], fmt: OccupancyFormat) -> List[str]:
    """`semantics` uint8 with labels 0..free, 0/1 `mask_lidar` and `mask_camera`, all (X, Y, Z)."""
    path = files["labels"]
    arrays, problems = _arrays(path, ("semantics", "mask_lidar", "mask_camera"))
    if problems:
        return problems
    return [problem for name, array in arrays.items()
            for problem in _grid_problems(path, name, array, tuple(fmt.grid), fmt.free_label if name == "semantics" else 1)]


def check_openocc_v2(files: Dict[str, str], fmt: OccupancyFormat) -> List[str]:
    """`semantics` uint8 (X, Y, Z) with labels 0..free, `flow` float (X, Y, Z, 2), finite."""
    path = files["labels"]
    arrays, problems = _arrays(path, ("semantics", "flow"))
    if problems:
        return problems
    problems = _grid_problems(path, "semantics", arrays["semantics"], tuple(fmt.grid), fmt.free_label)
    flow, shape = arrays["flow"], (*fmt.grid, 2)
    if flow.dtype.kind != "f" or flow.shape != shape:
        problems.append(f"{path}: flow must be float {shape}, got {flow.dtype} {flow.shape}")
    elif not np.isfinite(flow).all():
        problems.append(f"{path}: flow has {np.count_nonzero(~np.isfinite(flow))} non-finite values")
    return problems


def labels(path: str, fmt: OccupancyFormat) -> np.ndarray:
    """The `semantics` grid of a `labels.npz`."""
    with np.load(path, allow_pickle=False) as npz:
        return npz["semantics"]


def occ3d_file(info: dict, occ_root: Optional[str] = None) -> Optional[str]:
    """`occ_gt_path` when it names a `.npz`, else the `labels.npz` in the folder `occ_path` names."""
    gt_path, folder = info.get("occ_gt_path"), info.get("occ_path")
    if isinstance(gt_path, str) and gt_path.endswith(".npz"):
        return gt_path
    if isinstance(folder, str) and not folder.endswith((".npz", ".npy")):
        return os.path.join(folder, LABELS)
    return None


def openocc_v2_file(info: dict, occ_root: Optional[str] = None) -> Optional[str]:
    """`occ_path` when it names a `.npz`."""
    value = info.get("occ_path")
    return value if isinstance(value, str) and value.endswith(".npz") else None


OCC3D = GtLayout("occ3d", ("occ_gt_path", "occ_path"), {"occ_gt_path": ("labels", False), "occ_path": ("labels", True)},
                 occ3d_index, per_split=False, needs_lidar=False, check=check_occ3d, label_role="labels",
                 labels=labels, named_file=occ3d_file)
OPENOCC_V2 = GtLayout("openocc-v2", ("occ_path",), {"occ_path": ("labels", False)}, openocc_v2_index, per_split=False,
                      needs_lidar=False, check=check_openocc_v2, label_role="labels", labels=labels,
                      named_file=openocc_v2_file)
