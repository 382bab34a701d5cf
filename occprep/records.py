"""Typed records that flow between the create-infos stages (scan -> CAN bus -> temporal -> writer).

Arrays are columns: row i of every array in a record describes the same item. Indices into
another record are int64 with -1 for "none". Quaternions are (w, x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from functools import cached_property
from itertools import chain
from operator import attrgetter
from typing import Any, Dict, List, Optional, Sequence, TypeVar, Union

import numpy as np

from occprep.se3 import SE3

T = TypeVar("T")


@dataclass(frozen=True)
class CanBusPoses:
    """The CAN bus pose messages of one scene, in file order (M messages)."""

    utime: np.ndarray
    """(M,) int64, µs."""
    pos: np.ndarray
    """(M, 3) float64, ego position, m, global frame."""
    orientation: np.ndarray
    """(M, 4) float64, ego -> global rotation (w, x, y, z)."""
    accel: np.ndarray
    """(M, 3) float64, acceleration, m/s², ego frame."""
    rotation_rate: np.ndarray
    """(M, 3) float64, angular velocity, rad/s, ego frame."""
    vel: np.ndarray
    """(M, 3) float64, velocity, m/s, ego frame."""


@dataclass(frozen=True)
class CanBus:
    """CAN bus pose messages by scene name, and the reason each other scene has none."""

    poses: Dict[str, CanBusPoses]
    missing: Dict[str, str]
    """Scene name -> why it has no CAN bus data (blacklisted, no file, unreadable: ...)."""
    steering: Dict[str, "CanBusSteering"] = field(default_factory=dict)
    """Scene name -> its `steeranglefeedback` messages (read only for targets that use them)."""
    steering_missing: Dict[str, str] = field(default_factory=dict)
    """Scene name -> why it has no steering messages (when they were read)."""


@dataclass(frozen=True)
class CanBusSteering:
    """The CAN bus `steeranglefeedback` messages of one scene, in file order (M messages)."""

    utime: np.ndarray
    """(M,) int64, µs."""
    value: np.ndarray
    """(M,) float64, steering-wheel angle, rad, positive to the left (as the real files)."""


@dataclass(frozen=True)
class Transforms:
    """Rigid transforms child -> parent (calibrated sensors: sensor -> ego; ego poses: ego -> global).

    The source records' own lists are kept because infos carry them verbatim.
    """

    translation: np.ndarray
    """(N, 3) float64, m, parent frame."""
    rotation: np.ndarray
    """(N, 4) float64, (w, x, y, z)."""
    translation_list: List[List[float]]
    rotation_list: List[List[float]]

    @cached_property
    def se3(self) -> SE3:
        """The transforms as one batched `SE3` (N,), computed once."""
        return SE3.from_quaternions(self.rotation, self.translation)


@dataclass(frozen=True)
class Scenes:
    """The scene table, in file order."""

    token: List[str]
    name: List[str]
    location: List[str]
    """The location of the scene's log (`log.location`, e.g. 'singapore-onenorth')."""


@dataclass(frozen=True)
class Readings:
    """The sample_data an info can name: every LIDAR_TOP reading (keyframes and sweeps) and the
    keyframe camera readings, in sample_data table order (R rows)."""

    token: List[str]
    filename: List[str]
    """Relative to the dataset root, as in the table."""
    timestamp: np.ndarray
    """(R,) int64, µs."""
    width: Optional[np.ndarray]
    """(R,) int64, image width, px (0 for LiDAR); None unless read (`read_scan_tables(details=True)`)."""
    height: Optional[np.ndarray]
    """(R,) int64, image height, px (0 for LiDAR); None unless read."""
    calibration: np.ndarray
    """(R,) int64, row of the sensor -> ego transform in `Scan.calibrations`."""
    ego_pose: np.ndarray
    """(R,) int64, row of the ego -> global transform at this reading's time in `Scan.ego_poses`."""
    scene: np.ndarray
    """(R,) int64, row in `Scan.scenes` of the sample this reading belongs to."""
    prev: np.ndarray
    """(R,) int64, the previous reading of the same sensor (-1 at the start of the chain; for cameras
    only when their sweeps were kept)."""


@dataclass(frozen=True)
class Keyframes:
    """The samples in sample-table order (S rows) with their sensor readings."""

    token: List[str]
    prev: List[str]
    next: List[str]
    scene: np.ndarray
    """(S,) int64, row in `Scan.scenes`."""
    timestamp: np.ndarray
    """(S,) int64, µs."""
    frame_idx: np.ndarray
    """(S,) int64, 0-based position on the scene's sample chain."""
    prev_row: np.ndarray
    """(S,) int64, row of the previous sample on the scene's chain (-1 at its first)."""
    next_row: np.ndarray
    """(S,) int64, row of the next sample (-1 at the scene's last)."""
    lidar: np.ndarray
    """(S,) int64, the LIDAR_TOP keyframe reading (row in `Scan.readings`)."""
    cameras: np.ndarray
    """(S, C) int64, the keyframe reading of each camera, in the config's camera order."""
    annotations: np.ndarray
    """(S + 1,) int64 offsets: the sample's boxes are rows offsets[s]:offsets[s+1] of `Scan.annotations`."""

    def of_boxes(self) -> np.ndarray:
        """(A,) int64: the keyframe row of every box of `Scan.annotations`."""
        return np.repeat(np.arange(len(self.annotations) - 1), np.diff(self.annotations))


@dataclass(frozen=True)
class Annotations:
    """3D boxes grouped by sample (sample-table order; table order within a sample), A rows."""

    translation: np.ndarray
    """(A, 3) float64, box centre, m, global frame."""
    size: np.ndarray
    """(A, 3) float64, (w, l, h), m."""
    rotation: np.ndarray
    """(A, 4) float64, box -> global rotation (w, x, y, z)."""
    velocity: np.ndarray
    """(A, 3) float64, m/s, global frame (nuScenes-devkit `box_velocity`; NaN when unknown)."""
    category: List[str]
    instance: np.ndarray
    """(A,) int64, row of the box's instance in the instance table (the devkit's `getind('instance', ...)`)."""
    next: np.ndarray
    """(A,) int64, row (in these grouped rows) of the instance's next annotation (-1 at the track's end)."""
    attribute: Optional[List[str]]
    """Name of the box's first attribute ('None' when it has none), as mmdet3d's converters take it;
    None unless read (`read_scan_tables(details=True)`)."""
    visibility: Optional[List[str]]
    """`visibility_token` ('1'-'4', '' when absent); None unless read."""
    num_lidar_pts: np.ndarray
    """(A,) int64."""
    num_radar_pts: np.ndarray
    """(A,) int64."""


@dataclass(frozen=True)
class Scan:
    """Everything create-infos needs from the 13 tables, resolved and indexed."""

    scenes: Scenes
    keyframes: Keyframes
    readings: Readings
    calibrations: Transforms
    """Sensor -> ego, one row per calibrated_sensor record (file order)."""
    intrinsics: List[List[List[float]]]
    """Camera matrix of each calibrated_sensor record (empty for non-cameras)."""
    ego_poses: Transforms
    """Ego -> global, one row per ego pose a reading uses."""
    annotations: Annotations
    instance_tokens: Union[List[str], Dict[int, str]]
    """Token of every instance record by its row, as `Annotations.instance` indexes it: a list in table order
    (a dict of the rows a scene group holds, `occprep.sharded.ScanPart`)."""
    category_names: List[str]
    """Name of every category record, in table order."""


@dataclass(frozen=True)
class Temporal:
    """Per-keyframe geometry in the LIDAR_TOP frame at the keyframe (S keyframes, C cameras, K sweeps,
    A boxes)."""

    sweeps: np.ndarray
    """(S, K) int64 reading rows, most recent first, -1 padded."""
    lidar_from_global: SE3
    """(S,): global -> LIDAR_TOP at each keyframe."""
    lidar_from_camera: SE3
    """(S, C): each keyframe camera (at its own time) -> LIDAR_TOP at the keyframe (sensor2lidar)."""
    lidar_from_sweep: SE3
    """(S, K): each sweep (at its own time) -> LIDAR_TOP at the keyframe; undefined where `sweeps` is -1."""
    box_centre: np.ndarray
    """(A, 3), m, LIDAR_TOP frame."""
    box_yaw: np.ndarray
    """(A,), rad: the nuScenes heading of each box in the LIDAR_TOP frame (see `occprep.boxes`)."""
    box_velocity: np.ndarray
    """(A, 2), m/s: the planar global velocity rotated into the LIDAR_TOP frame, x and y; NaN kept."""


def remap_rows(rows: np.ndarray, new_row: np.ndarray) -> np.ndarray:
    """Rows (any shape, -1 for none) mapped through `new_row` (old row -> new row), -1 kept."""
    return np.where(rows >= 0, new_row[np.maximum(rows, 0)], -1)


def inverse_permutation(order: np.ndarray) -> np.ndarray:
    """The new row of each old row when rows are put in `order` (old rows, in their new order)."""
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank


def native_dtype(array: np.ndarray) -> np.ndarray:
    """`array` with numpy's own dtype object for its type. An unpickled array's dtype is a copy, and a pickle
    written from it would name the dtype anew instead of referring back to the first array of that type:
    other bytes for the same values."""
    return array.view(np.dtype(array.dtype.str))


def native(value: T) -> T:
    """`value` with numpy's own dtype objects on its arrays (see `native_dtype`), for records unpickled from
    another process: an array itself, the fields of a dataclass and the values of a dict, recursively
    (lists are left as they are)."""
    if isinstance(value, np.ndarray):
        return native_dtype(value)
    if isinstance(value, dict):
        return {key: native(item) for key, item in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: native(getattr(value, f.name)) for f in fields(value) if f.init})
    return value


def vector_fields(records: Sequence[Any], widths: Dict[str, int]) -> List[np.ndarray]:
    """(N, width) float64 arrays of the vector fields of N `records` named in `widths` (name -> width), in
    that order, read in one pass over the records."""
    count, total = len(records), sum(widths.values())
    vectors = map(attrgetter(*widths), records)
    if len(widths) > 1:
        vectors = chain.from_iterable(vectors)
    flat = np.fromiter(chain.from_iterable(vectors), dtype=np.float64, count=count * total).reshape(count, total)
    bounds = np.cumsum([0, *widths.values()]).tolist()
    return [np.ascontiguousarray(flat[:, start:end]) for start, end in zip(bounds, bounds[1:])]


def stack(rows: Sequence[Sequence[float]], width: int) -> np.ndarray:
    """(N, width) float64 array from N lists of `width` numbers (faster than np.array on lists)."""
    flat = np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=len(rows) * width)
    return flat.reshape(len(rows), width)
