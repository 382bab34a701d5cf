"""Dataset conventions as data: the JSON files in `configs/`, loaded into typed records.

A nuScenes-format dataset that differs from nuScenes (other cameras, other categories) needs a
config file, not a fork: pass its path wherever a config name is accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Collection, Dict, List, Tuple

import msgspec

from occprep.errors import OccprepError
from occprep.fileio import read_json
from occprep.names import describe_unknown, unknown_message


class DatasetConfig(msgspec.Struct, frozen=True):
    """Sensor channels and label conventions of a nuScenes-format dataset."""

    name: str
    lidar_channel: str
    camera_channels: Tuple[str, ...]
    """Camera channels in the order infos list them."""
    detection_names: Dict[str, str]
    """Category name -> detection name; unmapped categories keep their category name."""
    can_bus_blacklist: Tuple[int, ...] = ()
    """Scene numbers (the digits of `scene-NNNN`) that have no CAN bus data."""
    label_orders: Dict[str, Tuple[str, ...]] = {}
    """Consumer -> detection names by label id (e.g. 'mmdet3d': mmdet3d's `nus_categories` order,
    'bevdet': BEVDet's config `class_names` order)."""

    def label_order(self, consumer: str) -> Tuple[str, ...]:
        """Detection names by label id for `consumer`; an error naming the config when it has none."""
        if consumer not in self.label_orders:
            raise OccprepError(f"dataset config {self.name!r} has no label order {consumer!r}: add "
                               f"\"label_orders\": {{\"{consumer}\": [detection names by label id]}} to it")
        return self.label_orders[consumer]


class OccupancyFormat(msgspec.Struct, frozen=True):
    """A dense occupancy grid convention around the ego vehicle at one keyframe."""

    name: str
    frame: str
    """Frame the grid is defined in: 'lidar' or 'ego'."""
    point_cloud_range: Tuple[float, float, float, float, float, float]
    """[x_min, y_min, z_min, x_max, y_max, z_max], m."""
    voxel_size: float
    """Edge of a cubic voxel, m."""
    grid: Tuple[int, int, int]
    """Voxels along x, y, z."""
    classes: Tuple[str, ...]
    """Semantic class names by label id."""
    free_label: int
    """Label id of empty space (formats that list occupied voxels only: the id occprep's dense grids give the
    voxels a file does not list)."""
    suffix: str
    """What `merge-occ` appends to the stem of the infos file it merges into."""
    consumer_file: str = ""
    """The merged file's name its consumers read (`{tag}`, `{split}`), when merged into BEVFormer infos;
    empty: the infos file's stem and `suffix`."""
    out_dir: str = "occ_root"
    """Where `merge-occ` writes by default, as its consumers expect: 'occ_root', 'occ_root_parent' or
    'infos_dir'."""


def config_problems(config: DatasetConfig, given: str, channels: Collection[str], categories: Collection[str]) -> List[str]:
    """What a dataset config names that the tables do not hold: its channels (`sensor.channel`) and the
    categories its `detection_names` map (`category.name`); one line each, with the closest names."""
    problems = [
        unknown_message([config.lidar_channel, *config.camera_channels], channels, "sensor channel", f"--config {given}",
                        f"the tables' channels are {', '.join(sorted(channels))}; fix lidar_channel / camera_channels"),
        unknown_message(config.detection_names, categories, "category", f"--config {given} detection_names",
                        "use the tables' category.name values as its keys"),
    ]
    return [p for p in problems if p]


def config_dir() -> Path:
    """The bundled `configs/`: inside the installed package, or beside it in a source checkout."""
    here = Path(__file__).resolve().parent
    return next(d for d in (here / "configs", here.parent / "configs") if d.is_dir())


def load_config(name_or_path: str, type_: type, prefix: str):
    """Decode config `name_or_path` into `type_`: a JSON file, or `configs/<prefix><name>.json`."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.is_file():
        return read_json(path, type_)
    bundled = config_dir() / f"{prefix}{name_or_path}.json"
    if not bundled.is_file():
        known = sorted(p.stem[len(prefix) :] for p in config_dir().glob(f"{prefix}*.json"))
        name = name_or_path[len(prefix):] if name_or_path.startswith(prefix) else name_or_path
        if name in known:
            return read_json(config_dir() / f"{prefix}{name}.json", type_)
        raise OccprepError(f"unknown config {describe_unknown([name_or_path], known)}: give a JSON file or one of "
                           f"{', '.join(known)}")
    return read_json(bundled, type_)


def dataset_config(name_or_path: str = "nuscenes") -> DatasetConfig:
    """The dataset convention `name_or_path` ('nuscenes' or a JSON file)."""
    return load_config(name_or_path, DatasetConfig, "dataset-")


def occupancy_format(name_or_path: str) -> OccupancyFormat:
    """The occupancy convention `name_or_path` (a bundled `configs/occ-<name>.json` or a JSON file)."""
    return load_config(name_or_path, OccupancyFormat, "occ-")
