"""What a synthetic dataset looks like, as data: the sensor rig and the world's statistics.

Both come from `configs/` (`rig-<name>.json`, `synth-<name>.json`), so a dataset with another rig
or another category mix needs a config file, not a code change.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import msgspec

from occprep.config import config_dir
from occprep.errors import OccprepError
from occprep.fileio import read_json


class SensorSpec(msgspec.Struct, frozen=True):
    """One sensor of the rig; sensor frame -> ego frame: translation, m; rotation (w, x, y, z)."""

    channel: str
    modality: str
    """'camera', 'lidar' or 'radar'."""
    sensor_token: str
    rate_hz: float
    keyframe_offset_us: int
    """Keyframe timestamp of this sensor minus the sample timestamp (the LIDAR_TOP keyframe), µs."""
    fileformat: str
    width: int
    height: int
    translation: Tuple[float, float, float]
    rotation: Tuple[float, float, float, float]
    camera_intrinsic: List[List[float]]


class Rig(msgspec.Struct, frozen=True):
    """A calibrated sensor rig; `sensors` in table order."""

    name: str
    source: str
    sensors: Tuple[SensorSpec, ...]

    def sensor(self, channel: str) -> SensorSpec:
        return next(s for s in self.sensors if s.channel == channel)


class CategorySpec(msgspec.Struct, frozen=True):
    name: str
    count: int
    """Annotations of this category in the reference dataset: the weight of the category mix."""
    size: Tuple[float, float, float]
    """Mean box size (width, length, height), m."""
    behaviour: str
    """Key into `SynthSpec.behaviours`."""


class Behaviour(msgspec.Struct, frozen=True):
    attributes: Dict[str, float]
    """Attribute name -> probability; an empty dict means annotations carry no attribute."""
    moving_attribute: str
    """The attribute under which the agent moves; every other attribute is stationary."""
    speed: Tuple[float, float]
    """Uniform speed range when moving, m/s."""
    follows_road: bool = False
    """Heading along (or against) the ego route instead of random."""


class NamedText(msgspec.Struct, frozen=True):
    name: str
    description: str


class VisibilitySpec(msgspec.Struct, frozen=True):
    token: str
    level: str
    description: str


class Location(msgspec.Struct, frozen=True):
    name: str
    vehicle: str
    utc_offset: str
    """'+0800' style, as in log file names."""
    weight: float


class Background(msgspec.Struct, frozen=True):
    """Static blocks lining the ego route: one per side every `spacing_m`, m."""

    spacing_m: float
    lateral_m: Tuple[float, float]
    size_m: Tuple[float, float]
    height_m: Tuple[float, float]
    classes: Tuple[str, ...]
    """Occupancy class names the blocks take, alternately."""


class VisibilityRule(msgspec.Struct, frozen=True):
    """Which voxels the synthetic sensors observe (occprep.synth.occupancy states the rule): the LiDAR
    misses a band `shadow_depth_m` deep behind every box; the camera mask also needs `camera_range_m`
    (horizontal, from the grid origin)."""

    shadow_depth_m: float
    camera_range_m: float


class SynthSpec(msgspec.Struct, frozen=True):
    name: str
    source: str
    annotations_per_sample: int
    categories: Tuple[CategorySpec, ...]
    behaviours: Dict[str, Behaviour]
    attributes: Tuple[NamedText, ...]
    visibility: Tuple[VisibilitySpec, ...]
    locations: Tuple[Location, ...]
    scenes_per_log: int
    scene_gap_s: Tuple[float, float]
    agent_radius_m: Tuple[float, float]
    """Agents appear at this horizontal distance range from the ego vehicle, m."""
    background: Background
    visibility_rule: VisibilityRule
    can_bus_lead_us: Tuple[int, int]
    """CAN bus pose messages start this long (uniform range) before the first sample, µs."""


def _bundled(prefix: str, name: str, type_: type):
    path = config_dir() / f"{prefix}{name}.json"
    if not path.is_file():
        raise OccprepError(f"no bundled config {path.name} in {config_dir()}")
    return read_json(path, type_)


def load_rig(name: str = "nuscenes") -> Rig:
    """The sensor rig `configs/rig-<name>.json`."""
    return _bundled("rig-", name, Rig)


def load_synth_spec(name: str = "nuscenes") -> SynthSpec:
    """The world statistics `configs/synth-<name>.json`."""
    return _bundled("synth-", name, SynthSpec)
