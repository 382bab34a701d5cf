"""3-D boxes seen by the keyframe cameras: camera-frame boxes and their 2-D boxes in the image.

The rule is mmdetection3d's `get_2d_boxes` (v1.4.0 `mmdet3d/datasets/convert_utils.py`, also used by
StreamPETR): each annotation box is moved global -> ego at the camera's timestamp -> camera (the
devkit's `Box.translate/rotate`); its 8 corners with camera z > 0 are projected through the
intrinsics; the 2-D box is the bounds of their convex hull clipped to the image, and a box whose
clipped hull is not a polygon (no overlap, or fewer than three corners in front) has none. The
image is `sample_data` width × height (1600 × 900 for nuScenes, which the reference hard-codes).
Clipping uses shapely's vectorised `clip_by_rect` (the reference intersects with a box polygon:
same polygons, bounds within 1e-12 px, 16× faster); hulls wholly inside the image need none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
import shapely

from occprep import geometry
from occprep.records import Scan
from occprep.temporal import global_from_reading, orientation_from_global
from occprep.workers import can_fork, cores, fork_call

CORNER_SIGNS = np.array([[1, 1, 1, 1, -1, -1, -1, -1],
                         [1, -1, -1, 1, 1, -1, -1, 1],
                         [1, 1, -1, -1, 1, 1, -1, -1]], dtype=np.float64).T / 2
"""(8, 3) corners of a box of unit length, width, height in its own frame (x along the length), in
nuScenes-devkit `Box.corners` order."""

CHUNK = 1 << 18
"""Box/camera pairs processed at once (bounds memory on trainval: ~7M pairs)."""
FIELDS = ("sample", "camera", "box", "centre", "yaw", "velocity", "bbox")
SHAPES = (((), np.int64), ((), np.int64), ((), np.int64), ((3,), np.float64), ((), np.float64), ((3,), np.float64),
          ((4,), np.float64))
"""The columns of `CameraBoxes`, and each one's row shape and dtype."""


@dataclass(frozen=True)
class CameraBoxes:
    """The box/camera pairs (P) whose 2-D box exists, ordered by keyframe, camera, box."""

    sample: np.ndarray
    """(P,) int64 keyframe row."""
    camera: np.ndarray
    """(P,) int64 camera index in the config's order."""
    box: np.ndarray
    """(P,) int64 row in `Scan.annotations`."""
    centre: np.ndarray
    """(P, 3) float64 box centre, m, camera frame (x right, y down, z forward)."""
    yaw: np.ndarray
    """(P,) float64 heading of the box in the camera frame (pyquaternion `yaw_pitch_roll[0]`)."""
    velocity: np.ndarray
    """(P, 3) float64 planar global velocity (vz = 0) rotated into the camera frame, m/s; NaN kept."""
    bbox: np.ndarray
    """(P, 4) float64 [x1, y1, x2, y2], px."""


def _hull_bounds(uv: np.ndarray, front: np.ndarray, width: np.ndarray, height: np.ndarray):
    """Bounds (N, 4) of each pair's front corners' convex hull clipped to its image, and whether
    the clipped hull is a polygon (N,)."""
    count = front.sum(axis=1)
    low = np.where(front[..., None], uv, np.inf).min(axis=1)
    high = np.where(front[..., None], uv, -np.inf).max(axis=1)
    inside = (low[:, 0] >= 0) & (low[:, 1] >= 0) & (high[:, 0] <= width) & (high[:, 1] <= height)
    bounds = np.concatenate([low, high], axis=1)
    found = (count >= 3) & inside
    clip = np.flatnonzero((count >= 1) & ~inside & (high[:, 0] >= 0) & (high[:, 1] >= 0)
                          & (low[:, 0] <= width) & (low[:, 1] <= height))
    if clip.size:
        pair, corner = np.nonzero(front[clip])
        hulls = shapely.convex_hull(shapely.multipoints(uv[clip][pair, corner], indices=pair))
        clipped = np.empty(len(clip), dtype=object)
        sizes = np.stack([width[clip], height[clip]], axis=1)
        for size in np.unique(sizes, axis=0):
            same = (sizes == size).all(axis=1)
            clipped[same] = shapely.clip_by_rect(hulls[same], 0, 0, *size.tolist())
        bounds[clip] = shapely.bounds(clipped)
        found[clip] = (shapely.get_type_id(clipped) == 3) & ~shapely.is_empty(clipped)
    return bounds, found


def _frustum_planes(intrinsic: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """(..., 5, 3) unit inward normals of the planes through the camera centre that bound what an image
    of `width` × `height` px with (..., 3, 3) `intrinsic` sees (left, right, top, bottom), and z = 0."""
    k0, k1, k2 = intrinsic[..., 0, :], intrinsic[..., 1, :], intrinsic[..., 2, :]
    planes = np.stack([k0, width[..., None] * k2 - k0, k1, height[..., None] * k2 - k1, k2], axis=-2)
    return planes / np.linalg.norm(planes, axis=-1, keepdims=True)


def _may_be_seen(centre: np.ndarray, radius: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """(N,) False for boxes (bounding spheres of `radius` at `centre`, camera frame) wholly behind the
    camera or wholly beyond one side of the viewing frustum (`planes`, (N, 5, 3)): no corner of those
    can give a 2-D box, so they need not be projected."""
    return (np.einsum("pki,pi->pk", planes, centre) > -radius[:, None]).all(axis=1)


def camera_boxes(scan: Scan, keyframe_rows: slice = slice(None)) -> CameraBoxes:
    """Every annotation box of the keyframes in `keyframe_rows` (default: all) in each of the keyframe's
    cameras, where it has a 2-D box; the pairs of consecutive ranges, `joined`, are those of the whole."""
    keyframes, boxes, readings = scan.keyframes, scan.annotations, scan.readings
    first, stop, _ = keyframe_rows.indices(len(keyframes.token))
    cameras = keyframes.cameras.shape[1]
    camera_from_global = global_from_reading(scan, keyframes.cameras).inverse()
    intrinsics = np.array([scan.intrinsics[c] if scan.intrinsics[c] else np.eye(3).tolist()
                           for c in range(len(scan.intrinsics))], dtype=np.float64)
    key_calibration = readings.calibration[keyframes.cameras]
    planes = _frustum_planes(intrinsics[key_calibration], readings.width[keyframes.cameras],
                             readings.height[keyframes.cameras])
    owner = keyframes.of_boxes()
    box_rows = np.arange(keyframes.annotations[first], keyframes.annotations[max(first, stop)])
    pair_box = np.repeat(box_rows, cameras)
    pair_camera = np.tile(np.arange(cameras), len(box_rows))
    columns = {name: [] for name in FIELDS}
    for start in range(0, len(pair_box), CHUNK):
        box, camera = pair_box[start:start + CHUNK], pair_camera[start:start + CHUNK]
        sample = owner[box]
        reading = keyframes.cameras[sample, camera]
        to_camera = camera_from_global[sample, camera]
        centre = to_camera.apply(boxes.translation[box])
        near = _may_be_seen(centre, 0.5 * np.linalg.norm(boxes.size[box], axis=1), planes[sample, camera])
        box, camera, sample, reading, to_camera, centre = (box[near], camera[near], sample[near], reading[near],
                                                           to_camera[near], centre[near])
        orientation = orientation_from_global(boxes.rotation[box], scan.ego_poses.rotation[readings.ego_pose[reading]],
                                              scan.calibrations.rotation[readings.calibration[reading]])
        lwh = boxes.size[box][:, [1, 0, 2]]
        corners = (np.einsum("pij,pkj->pki", geometry.rotation_matrices(orientation), CORNER_SIGNS * lwh[:, None])
                   + centre[:, None])
        pixels = np.einsum("pij,pkj->pki", intrinsics[readings.calibration[reading]], corners)
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = pixels[..., :2] / pixels[..., 2:]
        bbox, found = _hull_bounds(uv, corners[..., 2] > 0, readings.width[reading], readings.height[reading])
        keep = np.flatnonzero(found)
        planar = boxes.velocity[box[keep]] * np.array([1.0, 1.0, 0.0])
        for name, values in zip(FIELDS, (sample[keep], camera[keep], box[keep], centre[keep],
                                         geometry.yaw(orientation[keep]), to_camera[keep].rotate(planar), bbox[keep])):
            columns[name].append(values)
    stacked = {name: np.concatenate(values) if values else np.zeros((0,) + shape, dtype=dtype)
               for (name, values), (shape, dtype) in zip(columns.items(), SHAPES)}
    order = np.lexsort((stacked["box"], stacked["camera"], stacked["sample"]))
    return CameraBoxes(**{name: values[order] for name, values in stacked.items()})


def joined(ranges: Sequence[CameraBoxes]) -> CameraBoxes:
    """The `camera_boxes` of consecutive keyframe ranges, in order, as those of the range they make up."""
    return CameraBoxes(**{name: np.concatenate([getattr(pairs, name) for pairs in ranges]) for name in FIELDS})


def camera_boxes_on_cores(scan: Scan) -> CameraBoxes:
    """`camera_boxes(scan)`; with two cores where this process can fork, the keyframes holding the later
    half of the boxes are projected meanwhile in a forked child."""
    offsets = scan.keyframes.annotations
    if cores() < 2 or not can_fork() or offsets[-1] < 2:
        return camera_boxes(scan)
    middle = int(np.searchsorted(offsets, offsets[-1] // 2))
    later = fork_call(lambda: camera_boxes(scan, slice(middle, None)))
    try:
        earlier = camera_boxes(scan, slice(middle))
        return joined([earlier, later.result()])
    finally:
        later.cancel()


def project_centres(scan: Scan, seen: CameraBoxes, dtype: type = np.float32) -> Tuple[np.ndarray, np.ndarray]:
    """(P, 2) image position (u, v), px, and (P,) depth, m, of every seen box centre, computed in
    `dtype` as mmdet3d's `points_cam2img` does (a float32 torch product in the references)."""
    readings = scan.keyframes.cameras[seen.sample, seen.camera]
    intrinsics = np.zeros((len(readings), 4, 4), dtype=dtype)
    intrinsics[:, :3, :3] = [scan.intrinsics[c] for c in scan.readings.calibration[readings].tolist()]
    intrinsics[:, 3, 3] = 1
    points = np.concatenate([seen.centre, np.ones((len(readings), 1))], axis=1).astype(dtype)
    projected = np.einsum("pij,pj->pi", intrinsics, points)
    return projected[:, :2] / projected[:, 2:3], projected[:, 2]
