"""Occupancy ground truth as releases lay it out: indexes by sample token, file location, checks.

One module per family of layouts, each giving a `GtLayout` (see `configs/occ-*.json` for grids,
classes and the file names consumers read):

- `openocc_v1`: OpenOcc v1 (OccNet) index JSONs naming three sparse `.npy` files per sample.
- `labels_npz`: dense `labels.npz` trees: Occ3D-nuScenes (`gts/`) and OpenOcc v2 (`openocc_v2/`).
- `voxel_lists`: sparse voxel lists named by the keyframe's LiDAR reading: SurroundOcc and
  OpenOccupancy (nuScenes-Occupancy); their indexes need the LiDAR keyframes (`keyframes`).

Published paths are found on disk with `paths.PathLocator`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterable, List

from occprep.config import OccupancyFormat
from occprep.occupancy import labels_npz, openocc_v1, voxel_lists
from occprep.occupancy.gt import GtIndex, GtLayout, GtSample, LidarKeyframe, LidarKeyframes
from occprep.occupancy.keyframes import lidar_keyframes
from occprep.occupancy.paths import PathLocator

LAYOUTS: Dict[str, GtLayout] = {layout.name: layout for layout in (
    openocc_v1.LAYOUT, labels_npz.OCC3D, labels_npz.OPENOCC_V2, voxel_lists.SURROUNDOCC, voxel_lists.OPENOCCUPANCY)}
FORMATS = tuple(LAYOUTS)

__all__ = ["FORMATS", "LAYOUTS", "GtIndex", "GtLayout", "GtSample", "LidarKeyframe", "LidarKeyframes", "PathLocator",
           "lidar_keyframes", "verify_samples"]


def verify_samples(samples: Iterable[Dict[str, str]], layout: GtLayout, fmt: OccupancyFormat,
                   workers: int, progress: Callable[..., Iterable]) -> List[str]:
    """Open and check every sample's files (role -> path) on `workers` threads; returns all problems in
    input order. `progress` wraps the result iterator (e.g. `Reporter.progress`) and receives `total` and `desc`."""
    samples = list(samples)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(layout.check, samples, [fmt] * len(samples))
        return [problem for found in progress(results, total=len(samples), desc="verify", unit="sample")
                for problem in found]
