"""Expected infos computed through nuscenes-devkit's own API, one sample at a time.

The oracle for create-infos tests: boxes from `NuScenes.get_sample_data` (devkit Box transforms),
velocities from `box_velocity`, camera intrinsics from `get_sample_data`, sensor2lidar as the
4x4 product inv(L2E) inv(E2G_lidar) E2G_sensor S2E of pyquaternion matrices, CAN bus from
`NuScenesCanBus.get_messages` with the reference slot rule.
"""

from __future__ import annotations

import os

import numpy as np
from pyquaternion import Quaternion

DETECTION_NAMES = {
    "movable_object.barrier": "barrier", "vehicle.bicycle": "bicycle", "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus", "vehicle.car": "car", "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle", "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian", "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian", "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer", "vehicle.truck": "truck",
}
"""The contract's mapping, written out independently of configs/dataset-nuscenes.json."""

INFO_KEYS = ["lidar_path", "token", "prev", "next", "can_bus", "frame_idx", "sweeps", "cams", "scene_token",
             "scene_name", "lidar2ego_translation", "lidar2ego_rotation", "ego2global_translation",
             "ego2global_rotation", "timestamp", "gt_boxes", "gt_names", "gt_velocity", "num_lidar_pts",
             "num_radar_pts", "valid_flag"]
SENSOR_KEYS = ["data_path", "type", "sample_data_token", "sensor2ego_translation", "sensor2ego_rotation",
               "ego2global_translation", "ego2global_rotation", "timestamp", "sensor2lidar_rotation",
               "sensor2lidar_translation"]
CAMERAS = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]


def homogeneous(translation, rotation) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = Quaternion(rotation).rotation_matrix
    matrix[:3, 3] = translation
    return matrix


def sensor_to_lidar(nusc, sd_token: str, lidar_token: str) -> np.ndarray:
    """4x4: sensor at its time -> LIDAR_TOP at the keyframe."""
    def chain(token):
        sd = nusc.get("sample_data", token)
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        return homogeneous(cs["translation"], cs["rotation"]), homogeneous(pose["translation"], pose["rotation"])

    sensor2ego, ego2global_sensor = chain(sd_token)
    lidar2ego, ego2global_lidar = chain(lidar_token)
    return np.linalg.inv(lidar2ego) @ np.linalg.inv(ego2global_lidar) @ ego2global_sensor @ sensor2ego


def can_bus_slots(messages, timestamp: int, mode: str = "reference") -> np.ndarray:
    """The contract's rule over devkit `get_messages(scene, 'pose')` output."""
    if not messages:
        return np.zeros(18)
    later = [i for i, m in enumerate(messages) if m["utime"] > timestamp]
    after = later[0] if later else len(messages) - 1
    before = max(after - 1, 0) if later else len(messages) - 1
    dynamic = messages[after if mode == "reference" else before]
    return np.array([*messages[before]["pos"], *messages[before]["orientation"], *dynamic["accel"],
                     *dynamic["rotation_rate"], *dynamic["vel"], 0.0, 0.0])


def frame_indices(nusc) -> dict:
    """Sample token -> position on its scene's chain."""
    index = {}
    for scene in nusc.scene:
        token, position = scene["first_sample_token"], 0
        while token:
            index[token] = position
            token, position = nusc.get("sample", token)["next"], position + 1
    return index


def sweep_tokens(nusc, lidar_token: str, max_sweeps: int) -> list:
    tokens, sd = [], nusc.get("sample_data", lidar_token)
    while len(tokens) < max_sweeps and sd["prev"]:
        tokens.append(sd["prev"])
        sd = nusc.get("sample_data", sd["prev"])
    return tokens


def expected_boxes(nusc, sample: dict):
    """gt_boxes, gt_names, gt_velocity of a sample through devkit Boxes in the LIDAR_TOP frame."""
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", lidar["ego_pose_token"])
    _, boxes, _ = nusc.get_sample_data(lidar["token"])
    gt_boxes = np.array([[*b.center, *b.wlh, -b.orientation.yaw_pitch_roll[0] - np.pi / 2] for b in boxes]).reshape(-1, 7)
    names = [DETECTION_NAMES.get(b.name, b.name) for b in boxes]
    velocities = []
    for token in sample["anns"]:
        velocity = np.array([*nusc.box_velocity(token)[:2], 0.0])
        velocity = Quaternion(pose["rotation"]).inverse.rotate(velocity)
        velocities.append(Quaternion(cs["rotation"]).inverse.rotate(velocity)[:2])
    return gt_boxes, names, np.array(velocities).reshape(-1, 2)


def assert_infos_match(nusc, infos: list, root_path: str, max_sweeps: int, annotations: bool = True) -> None:
    """Every info equals what the devkit computes for its sample (keys, order, types, values)."""
    frame_idx = frame_indices(nusc)
    for info in infos:
        sample = nusc.get("sample", info["token"])
        lidar_token = sample["data"]["LIDAR_TOP"]
        lidar = nusc.get("sample_data", lidar_token)
        cs = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
        pose = nusc.get("ego_pose", lidar["ego_pose_token"])
        assert list(info) == (INFO_KEYS if annotations else INFO_KEYS[:INFO_KEYS.index("gt_boxes")])
        assert info["lidar_path"] == os.path.join(root_path, lidar["filename"])
        assert (info["prev"], info["next"], info["scene_token"]) == (sample["prev"], sample["next"], sample["scene_token"])
        assert info["scene_name"] == nusc.get("scene", sample["scene_token"])["name"]
        assert info["frame_idx"] == frame_idx[info["token"]] and type(info["frame_idx"]) is int
        assert info["timestamp"] == sample["timestamp"] and type(info["timestamp"]) is int
        assert info["lidar2ego_translation"] == cs["translation"] and info["lidar2ego_rotation"] == cs["rotation"]
        assert info["ego2global_translation"] == pose["translation"]
        assert info["ego2global_rotation"] == pose["rotation"]

        assert list(info["cams"]) == CAMERAS
        for channel, cam in info["cams"].items():
            token = sample["data"][channel]
            path, _, intrinsic = nusc.get_sample_data(token, selected_anntokens=[])
            assert list(cam) == SENSOR_KEYS + ["cam_intrinsic"]
            assert cam["data_path"] == path and cam["type"] == channel and cam["sample_data_token"] == token
            np.testing.assert_array_equal(cam["cam_intrinsic"], intrinsic)
            assert cam["cam_intrinsic"].dtype == np.float64
            _assert_sensor_matches(nusc, cam, token, lidar_token)

        assert [s["sample_data_token"] for s in info["sweeps"]] == sweep_tokens(nusc, lidar_token, max_sweeps)
        for sweep in info["sweeps"]:
            assert list(sweep) == SENSOR_KEYS and sweep["type"] == "lidar"
            _assert_sensor_matches(nusc, sweep, sweep["sample_data_token"], lidar_token)
        if annotations:
            _assert_boxes_match(nusc, info, sample)


def _assert_boxes_match(nusc, info: dict, sample: dict) -> None:
    boxes, names, velocity = expected_boxes(nusc, sample)
    assert info["gt_boxes"].dtype == np.float64 and info["gt_boxes"].shape == boxes.shape
    np.testing.assert_allclose(info["gt_boxes"], boxes, rtol=0, atol=1e-9)
    assert info["gt_names"].tolist() == names and info["gt_names"].dtype.kind == "U"
    assert info["gt_velocity"].dtype == np.float64 and info["gt_velocity"].shape == (len(names), 2)
    np.testing.assert_allclose(info["gt_velocity"], velocity, rtol=0, atol=1e-9)  # NaN where NaN
    annotations = [nusc.get("sample_annotation", t) for t in sample["anns"]]
    assert info["num_lidar_pts"].tolist() == [a["num_lidar_pts"] for a in annotations]
    assert info["num_radar_pts"].tolist() == [a["num_radar_pts"] for a in annotations]
    assert info["num_lidar_pts"].dtype == np.int64 and info["num_radar_pts"].dtype == np.int64
    assert info["valid_flag"].dtype == bool
    assert info["valid_flag"].tolist() == [a["num_lidar_pts"] + a["num_radar_pts"] > 0 for a in annotations]


def _assert_sensor_matches(nusc, sensor: dict, token: str, lidar_token: str) -> None:
    sd = nusc.get("sample_data", token)
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    assert sensor["timestamp"] == sd["timestamp"]
    assert (sensor["sensor2ego_translation"], sensor["sensor2ego_rotation"]) == (cs["translation"], cs["rotation"])
    assert (sensor["ego2global_translation"], sensor["ego2global_rotation"]) == (pose["translation"], pose["rotation"])
    expected = sensor_to_lidar(nusc, token, lidar_token)
    assert sensor["sensor2lidar_rotation"].shape == (3, 3) and sensor["sensor2lidar_translation"].shape == (3,)
    np.testing.assert_allclose(sensor["sensor2lidar_rotation"], expected[:3, :3], rtol=0, atol=1e-12)
    np.testing.assert_allclose(sensor["sensor2lidar_translation"], expected[:3, 3], rtol=0, atol=1e-9)
