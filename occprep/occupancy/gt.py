"""What every occupancy layout gives the merge, the checks and `show`: ground truth samples by token."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from occprep.config import OccupancyFormat


@dataclass(frozen=True)
class LidarKeyframe:
    """The LiDAR keyframe reading of one sample, as two layouts name their files by it."""

    sample_token: str
    scene_token: str
    scene_name: str
    lidar_token: str
    """The LIDAR_TOP `sample_data` token of the keyframe."""
    lidar_file: str
    """Its file name without folders (`n015-...__LIDAR_TOP__1532402927647951.pcd.bin`)."""
    lidarseg: Optional[str]
    """Its lidarseg `.bin` joined onto the dataset root as typed; None when the version has no lidarseg table."""


LidarKeyframes = Mapping[str, LidarKeyframe]
"""Sample token -> its LiDAR keyframe reading."""


@dataclass(frozen=True)
class GtSample:
    """One keyframe's ground truth in a release."""

    scene_name: str
    token: str
    files: Dict[str, str]
    """File role -> path as the release names it (or as found under the occ root as typed); each must be
    on disk, and `--verify` opens them."""
    values: Dict[str, object]
    """Info key -> the value merged into the info with `--path-style as-is`."""


@dataclass(frozen=True)
class GtIndex:
    """The ground truth samples of one index file or folder tree, by sample token."""

    source: Path
    """The index JSON or the folder the samples were found in."""
    samples: Dict[str, GtSample]


@dataclass(frozen=True)
class GtLayout:
    """One release layout: how to index it, what it adds to an info, how to check and read its files."""

    name: str
    info_keys: Tuple[str, ...]
    """Keys merged into each info (besides `scene_name`)."""
    located_keys: Dict[str, Tuple[str, bool]]
    """Info key -> (file role, whether the key names the file's folder): the keys `--path-style absolute`
    and `relative` rewrite to where the file was found."""
    index: Callable[[str, str, Optional[LidarKeyframes]], GtIndex]
    """(occ root as typed, split, LiDAR keyframes by sample token or None) -> the samples of `split`."""
    per_split: bool
    """Whether each split has its own index (else one index serves every split)."""
    needs_lidar: bool
    """Whether `index` needs the LiDAR keyframes (file names by LiDAR reading: read from the tables)."""
    check: Callable[[Dict[str, str], OccupancyFormat], List[str]]
    """Checks one sample's files (role -> located path); returns problems, each naming its file."""
    label_role: str
    """The file role holding the semantic labels."""
    labels: Callable[[str, OccupancyFormat], np.ndarray]
    """A label file -> its dense (X, Y, Z) uint8 grid, indexed [x, y, z], free voxels `free_label`."""
    named_file: Callable[[dict, Optional[str]], Optional[str]]
    """(info, occ root or None) -> the label file the info names (as the info spells it), or None."""


def load_npy(path: str) -> np.ndarray:
    """An `.npy` array, object arrays refused."""
    with open(path, "rb") as handle:
        return np.load(handle, allow_pickle=False)


def unreadable(path: str, exc: Exception) -> str:
    """The problem line of a file that does not load."""
    return f"{path}: not a readable {Path(path).suffix or 'file'} ({type(exc).__name__}: {exc})"


def scene_folders(folder: Path) -> Iterator[Tuple[str, str]]:
    """(scene folder name, path) of the sub-folders of `folder`, by name."""
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_dir():
            yield entry.name, entry.path
