"""Expected values of the other targets, computed sample by sample through nuscenes-devkit's own API and
the reference algorithms as /docs consumer-formats describes them (mmdetection3d v1.0.0rc6 and v1.4.0,
FlashOcc's create_data_bevdet.py): devkit `Box` moves, `view_points`, shapely hulls, pyquaternion
matrices. Written independently of occprep's vectorised code.
"""

from __future__ import annotations

import os

import numpy as np
from nuscenes.utils.geometry_utils import view_points
from pyquaternion import Quaternion
from shapely.geometry import MultiPoint, Polygon, box

from devkit_oracle import DETECTION_NAMES, homogeneous, sensor_to_lidar
from helpers import assert_same

MMDET3D_CLASSES = ["car", "truck", "trailer", "bus", "construction_vehicle", "bicycle", "motorcycle", "pedestrian",
                   "traffic_cone", "barrier"]
BEVDET_CLASSES = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
                  "pedestrian", "traffic_cone"]
ATTRIBUTES = ["cycle.with_rider", "cycle.without_rider", "pedestrian.moving", "pedestrian.standing",
              "pedestrian.sitting_lying_down", "vehicle.moving", "vehicle.parked", "vehicle.stopped", "None"]
RC6_KEYS = ["lidar_path", "token", "sweeps", "cams", "lidar2ego_translation", "lidar2ego_rotation",
            "ego2global_translation", "ego2global_rotation", "timestamp", "gt_boxes", "gt_names", "gt_velocity",
            "num_lidar_pts", "num_radar_pts", "valid_flag"]


def f32(matrix) -> np.ndarray:
    """A matrix rounded through float32, as mmdet3d 1.x stores it."""
    return np.asarray(matrix, dtype=np.float64).astype(np.float32)


def assert_f32(actual, expected, what: str) -> None:
    """float32-rounded values equal up to one float32 step (rounding ties of last-bit differences)."""
    np.testing.assert_array_max_ulp(np.asarray(actual, dtype=np.float32), f32(expected), maxulp=1, dtype=np.float32)


def rc_boxes(nusc, sample: dict) -> np.ndarray:
    """rc6 `gt_boxes`: [centre, l, w, h, yaw] of the devkit's LiDAR-frame boxes."""
    _, boxes, _ = nusc.get_sample_data(sample["data"]["LIDAR_TOP"])
    return np.array([[*b.center, *b.wlh[[1, 0, 2]], b.orientation.yaw_pitch_roll[0]] for b in boxes]).reshape(-1, 7)


def assert_mmdet3d_info(nusc, info: dict, bevformer: dict) -> None:
    """An mmdet3d 1.0rc6 info: its key order, rc boxes, every other key as BEVFormer's (checked by the
    BEVFormer oracle)."""
    sample = nusc.get("sample", info["token"])
    annotated = "gt_boxes" in bevformer
    assert list(info) == (RC6_KEYS if annotated else RC6_KEYS[:9])
    for key in RC6_KEYS[:9]:
        if key not in ("sweeps", "cams"):
            assert info[key] == bevformer[key], key
    if annotated:
        np.testing.assert_allclose(info["gt_boxes"], rc_boxes(nusc, sample), atol=1e-9)
        for key in RC6_KEYS[10:]:
            np.testing.assert_array_equal(info[key], bevformer[key])


def bevdet_ann_infos(nusc, sample: dict):
    """FlashOcc's `ann_infos`: boxes moved into the CAM_FRONT keyframe's ego pose, velocity with vz, NaN -> 0."""
    front = nusc.get("sample_data", sample["data"]["CAM_FRONT"])
    pose = nusc.get("ego_pose", front["ego_pose_token"])
    rows, labels = [], []
    for token in sample["anns"]:
        ann = nusc.get("sample_annotation", token)
        name = DETECTION_NAMES.get(ann["category_name"])
        if name not in BEVDET_CLASSES or ann["num_lidar_pts"] + ann["num_radar_pts"] <= 0:
            continue
        velocity = nusc.box_velocity(token)
        b = nusc.get_box(token)
        b.velocity = np.zeros(3) if np.isnan(velocity).any() else velocity
        b.translate(-np.array(pose["translation"]))
        b.rotate(Quaternion(pose["rotation"]).inverse)
        rows.append(np.array([*b.center, *b.wlh[[1, 0, 2]], b.orientation.yaw_pitch_roll[0], *b.velocity[:2]]))
        labels.append(BEVDET_CLASSES.index(name))
    return rows, labels


def assert_bevdet_info(nusc, info: dict, mmdet3d: dict, occ_root: str) -> None:
    """A BEVDet info: the rc6 keys (no sweeps), then ann_infos (train/val), scene_token, scene_name, occ_path."""
    sample = nusc.get("sample", info["token"])
    scene = nusc.get("scene", sample["scene_token"])
    extra = (["ann_infos"] if "gt_boxes" in mmdet3d else []) + ["scene_token", "scene_name", "occ_path"]
    assert list(info) == list(mmdet3d) + extra
    assert info["sweeps"] == []
    if "ann_infos" in info:
        rows, labels = bevdet_ann_infos(nusc, sample)
        assert type(info["ann_infos"]) is tuple and info["ann_infos"][1] == labels
        assert len(info["ann_infos"][0]) == len(rows)
        for actual, expected in zip(info["ann_infos"][0], rows):
            assert actual.dtype == np.float64 and actual.shape == (9,)
            np.testing.assert_allclose(actual, expected, atol=1e-9)
    assert (info["scene_token"], info["scene_name"]) == (scene["token"], scene["name"])
    assert info["occ_path"] == os.path.join(occ_root, "gts", scene["name"], info["token"])


def camera_instances(nusc, camera_token: str) -> list:
    """mmdet3d v1.4.0 `get_nuscenes_2d_boxes` for one keyframe camera, all visibilities."""
    return [record for _, record in camera_records(nusc, camera_token)]


def streampetr_camera(nusc, camera_token: str) -> dict:
    """StreamPETR's seven lists for one keyframe camera: the records of `camera_records` with a 2-D box of
    at least 1 × 1 px inside the image."""
    sd = nusc.get("sample_data", camera_token)
    kept = []
    for ann, record in camera_records(nusc, camera_token):
        x1, y1, x2, y2 = record["bbox"]
        w, h = x2 - x1, y2 - y1
        inside = max(0, min(x1 + w, sd["width"]) - max(x1, 0)) * max(0, min(y1 + h, sd["height"]) - max(y1, 0))
        if inside != 0 and w * h > 0 and w >= 1 and h >= 1:
            kept.append((ann, record, [x1, y1, x1 + w, y1 + h]))
    return {
        "bboxes2d": np.array([box for _, _, box in kept], dtype=np.float32),
        "bboxes3d_cams": np.array([r["bbox_3d"] for _, r, _ in kept], dtype=np.float32),
        "labels2d": np.array([r["bbox_label"] for _, r, _ in kept], dtype=np.int64),
        "centers2d": np.array([r["center_2d"] for _, r, _ in kept], dtype=np.float32),
        "depths": np.array([r["depth"] for _, r, _ in kept], dtype=np.float32),
        "bboxes_ignore": np.array([], dtype=np.float32),
        "visibilities": [ann["visibility_token"] for ann, _, _ in kept],
    }


def camera_records(nusc, camera_token: str) -> list:
    """(annotation, record) of `get_nuscenes_2d_boxes` for one keyframe camera."""
    sd = nusc.get("sample_data", camera_token)
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    intrinsic = np.array(cs["camera_intrinsic"])
    canvas = box(0, 0, sd["width"], sd["height"])
    records = []
    for token in nusc.get("sample", sd["sample_token"])["anns"]:
        ann = nusc.get("sample_annotation", token)
        b = nusc.get_box(token)
        b.translate(-np.array(pose["translation"]))
        b.rotate(Quaternion(pose["rotation"]).inverse)
        b.translate(-np.array(cs["translation"]))
        b.rotate(Quaternion(cs["rotation"]).inverse)
        corners = b.corners()
        corners = corners[:, corners[2, :] > 0]
        hull = MultiPoint(view_points(corners, intrinsic, True).T[:, :2].tolist()).convex_hull
        if not hull.intersects(canvas):
            continue
        clipped = hull.intersection(canvas)
        name = DETECTION_NAMES.get(ann["category_name"])
        if not isinstance(clipped, Polygon) or name is None:
            continue
        xs, ys = np.array(clipped.exterior.coords).T
        padded = np.eye(4, dtype=np.float32)
        padded[:3, :3] = intrinsic
        projected = np.array([*b.center, 1.0], dtype=np.float32) @ padded.T
        if projected[2] <= 0:
            continue
        velocity = np.array([*nusc.box_velocity(token)[:2], 0.0])
        velocity = Quaternion(cs["rotation"]).inverse.rotate(Quaternion(pose["rotation"]).inverse.rotate(velocity))
        attribute = nusc.get("attribute", ann["attribute_tokens"][0])["name"] if ann["attribute_tokens"] else "None"
        records.append((ann, {
            "bbox_label": MMDET3D_CLASSES.index(name), "bbox_label_3d": MMDET3D_CLASSES.index(name),
            "bbox": [xs.min(), ys.min(), xs.max(), ys.max()], "bbox_3d_isvalid": True,
            "bbox_3d": [*b.center, b.wlh[1], b.wlh[2], b.wlh[0], -b.orientation.yaw_pitch_roll[0]],
            "velocity": [velocity[0], velocity[2]], "center_2d": (projected[:2] / projected[2]).tolist(),
            "depth": float(projected[2]), "attr_label": ATTRIBUTES.index(attribute),
        }))
    return records


def assert_v2_entry(nusc, entry: dict, index: int, root_path: str, annotated: bool) -> None:
    """One mmdet3d v1.4.0 `data_list` entry: key orders, float32 matrices, paths, instances, cam_instances."""
    sample = nusc.get("sample", entry["token"])
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cs = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", lidar["ego_pose_token"])
    keys = ["sample_idx", "token", "timestamp", "ego2global", "images", "lidar_points"]
    keys += ["lidar_sweeps"] if lidar["prev"] else []
    keys += ["instances"] + (["cam_instances"] if annotated else [])
    assert list(entry) == keys
    assert entry["sample_idx"] == index and entry["timestamp"] == sample["timestamp"] / 1e6
    assert_f32(entry["ego2global"], homogeneous(pose["translation"], pose["rotation"]), "ego2global")
    assert list(entry["lidar_points"]) == ["num_pts_feats", "lidar_path", "lidar2ego"]
    assert entry["lidar_points"]["num_pts_feats"] == 5
    assert entry["lidar_points"]["lidar_path"] == os.path.basename(lidar["filename"])
    assert_f32(entry["lidar_points"]["lidar2ego"], homogeneous(cs["translation"], cs["rotation"]), "lidar2ego")
    assert list(entry["images"]) == ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT",
                                     "CAM_BACK_RIGHT"]
    for channel, image in entry["images"].items():
        sd = nusc.get("sample_data", sample["data"][channel])
        cam_cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        assert list(image) == ["img_path", "cam2img", "cam2ego", "sample_data_token", "timestamp", "lidar2cam"]
        assert image["img_path"] == os.path.basename(sd["filename"]) and image["cam2img"] == cam_cs["camera_intrinsic"]
        assert image["sample_data_token"] == sd["token"] and image["timestamp"] == sd["timestamp"] / 1e6
        assert_f32(image["cam2ego"], homogeneous(cam_cs["translation"], cam_cs["rotation"]), "cam2ego")
        assert_f32(image["lidar2cam"], np.linalg.inv(sensor_to_lidar(nusc, sd["token"], lidar["token"])), "lidar2cam")
    for sweep in entry.get("lidar_sweeps", []):
        sd = nusc.get("sample_data", sweep["sample_data_token"])
        sweep_cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        sweep_pose = nusc.get("ego_pose", sd["ego_pose_token"])
        assert list(sweep) == ["timestamp", "ego2global", "lidar_points", "sample_data_token"]
        assert sweep["timestamp"] == sd["timestamp"] / 1e6
        assert sweep["lidar_points"]["num_pts_feats"] is None
        assert sweep["lidar_points"]["lidar_path"] == os.path.join(root_path, sd["filename"])
        assert_f32(sweep["ego2global"], homogeneous(sweep_pose["translation"], sweep_pose["rotation"]), "sweep pose")
        assert_f32(sweep["lidar_points"]["lidar2ego"], homogeneous(sweep_cs["translation"], sweep_cs["rotation"]), "")
        assert_f32(sweep["lidar_points"]["lidar2sensor"],
                   np.linalg.inv(sensor_to_lidar(nusc, sd["token"], lidar["token"])), "lidar2sensor")
    if not annotated:
        assert entry["instances"] == []
        return
    boxes = rc_boxes(nusc, sample)
    assert len(entry["instances"]) == len(sample["anns"])
    for instance, token, expected in zip(entry["instances"], sample["anns"], boxes):
        ann = nusc.get("sample_annotation", token)
        name = DETECTION_NAMES.get(ann["category_name"])
        label = MMDET3D_CLASSES.index(name) if name in MMDET3D_CLASSES else -1
        assert list(instance) == ["bbox_label", "bbox_3d", "bbox_3d_isvalid", "bbox_label_3d", "num_lidar_pts",
                                  "num_radar_pts", "velocity"]
        assert instance["bbox_label"] == instance["bbox_label_3d"] == label
        np.testing.assert_allclose(instance["bbox_3d"], expected, atol=1e-9)
        assert instance["bbox_3d_isvalid"] == (ann["num_lidar_pts"] + ann["num_radar_pts"] > 0)
        assert (instance["num_lidar_pts"], instance["num_radar_pts"]) == (ann["num_lidar_pts"], ann["num_radar_pts"])
    for channel, found in entry["cam_instances"].items():
        expected = camera_instances(nusc, sample["data"][channel])
        assert len(found) == len(expected), channel
        for record, want in zip(found, expected):
            assert list(record) == list(want)
            for key in ("bbox_label", "bbox_label_3d", "bbox_3d_isvalid", "attr_label"):
                assert record[key] == want[key], key
            np.testing.assert_allclose(record["bbox"], want["bbox"], atol=1e-6)
            np.testing.assert_allclose(record["bbox_3d"], want["bbox_3d"], atol=1e-9)
            np.testing.assert_allclose(record["velocity"], want["velocity"], atol=1e-9)
            assert_f32(record["center_2d"], want["center_2d"], "center_2d")
            assert_f32(record["depth"], want["depth"], "depth")


STREAMPETR_KEYS = ["lidar_path", "token", "prev", "next", "sweeps", "frame_idx", "cams", "scene_token",
                   "lidar2ego_translation", "lidar2ego_rotation", "ego2global_translation", "ego2global_rotation",
                   "timestamp"]


def assert_streampetr_info(nusc, info: dict, bevformer: dict, mmdet3d: dict) -> None:
    """A StreamPETR info: BEVFormer's sample keys and frame_idx, rc6's gt_* keys, the per-camera lists."""
    camera_keys = ["bboxes2d", "bboxes3d_cams", "labels2d", "centers2d", "depths", "bboxes_ignore", "visibilities"]
    annotated = "gt_boxes" in bevformer
    assert list(info) == STREAMPETR_KEYS + (RC6_KEYS[9:] + camera_keys if annotated else [])
    for key in STREAMPETR_KEYS:
        if key not in ("sweeps", "cams"):
            assert info[key] == bevformer[key], key
    if not annotated:
        return
    for key in RC6_KEYS[9:]:
        np.testing.assert_array_equal(info[key], mmdet3d[key])
    sample = nusc.get("sample", info["token"])
    for c, channel in enumerate(["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT",
                                 "CAM_BACK_RIGHT"]):
        expected = streampetr_camera(nusc, sample["data"][channel])
        for key in camera_keys[:-1]:
            actual = info[key][c]
            assert actual.dtype == expected[key].dtype and actual.shape == expected[key].shape, (key, channel)
            tolerance = 2e-4 if key in ("bboxes2d", "centers2d") else 1e-5
            np.testing.assert_allclose(actual, expected[key], atol=tolerance, rtol=1e-6, err_msg=key)
        assert info["visibilities"][c] == expected["visibilities"]


SPARSEBEV_CAMERAS = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT"]


def sparsebev_camera(nusc, token: str, data_root: str) -> dict:
    """SparseBEV's `get_cam_info` of one camera sample_data: row-vector sensor2global and the rest."""
    sd = nusc.get("sample_data", token)
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    sensor2ego, ego2global = Quaternion(cs["rotation"]).rotation_matrix, Quaternion(pose["rotation"]).rotation_matrix
    return {"data_path": os.path.join(data_root, sd["filename"]),
            "sensor2global_rotation": sensor2ego.T @ ego2global.T,
            "sensor2global_translation": np.array(cs["translation"]) @ ego2global.T + np.array(pose["translation"]),
            "cam_intrinsic": np.array(cs["camera_intrinsic"]), "timestamp": sd["timestamp"]}


def assert_sparsebev_info(nusc, info: dict, mmdet3d: dict, data_root: str) -> None:
    """A SparseBEV info: the rc6 info with SparseBEV's camera entries and up to 5 camera sweeps (fewer when
    a camera chain ends), none at a scene's first sample."""
    assert list(info) == list(mmdet3d)
    for key in mmdet3d:
        if key not in ("sweeps", "cams"):
            np.testing.assert_array_equal(info[key], mmdet3d[key]) if isinstance(info[key], np.ndarray) else None
            assert isinstance(info[key], np.ndarray) or info[key] == mmdet3d[key], key
    sample = nusc.get("sample", info["token"])

    def same(actual: dict, expected: dict) -> None:
        assert list(actual) == list(expected)
        for key, value in expected.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_allclose(actual[key], value, atol=1e-9)
            else:
                assert actual[key] == value, key

    for channel, cam in info["cams"].items():
        expected = sparsebev_camera(nusc, sample["data"][channel], data_root)
        reference = mmdet3d["cams"][channel]
        assert list(cam) == ["data_path", "type", "timestamp", "sensor2lidar_rotation", "sensor2lidar_translation",
                             "cam_intrinsic", "sensor2global_rotation", "sensor2global_translation"]
        assert cam["type"] == reference["type"] and cam["timestamp"] == reference["timestamp"]
        np.testing.assert_array_equal(cam["sensor2lidar_rotation"], reference["sensor2lidar_rotation"])
        same({k: cam[k] for k in expected}, expected)
    current = {channel: nusc.get("sample_data", sample["data"][channel]) for channel in SPARSEBEV_CAMERAS}
    expected_sweeps = []
    while sample["prev"] and len(expected_sweeps) < 5 and all(sd["prev"] for sd in current.values()):
        current = {channel: nusc.get("sample_data", sd["prev"]) for channel, sd in current.items()}
        expected_sweeps.append({channel: sparsebev_camera(nusc, sd["token"], data_root) for channel, sd in
                                current.items()})
    assert len(info["sweeps"]) == len(expected_sweeps)
    for actual, expected in zip(info["sweeps"], expected_sweeps):
        assert list(actual) == SPARSEBEV_CAMERAS
        for channel in SPARSEBEV_CAMERAS:
            same(actual[channel], expected[channel])


UNIAD_KEYS = ["lidar_path", "token", "prev", "next", "can_bus", "frame_idx", "sweeps", "cams", "scene_token",
              "lidar2ego_translation", "lidar2ego_rotation", "ego2global_translation", "ego2global_rotation",
              "timestamp", "gt_boxes", "gt_names", "gt_velocity", "num_lidar_pts", "num_radar_pts", "valid_flag",
              "gt_inds", "gt_ins_tokens", "fut_traj", "fut_traj_valid_mask", "visibility_tokens"]


def assert_uniad_info(nusc, helper, info: dict, bevformer: dict) -> None:
    """A UniAD v1 info: BEVFormer's keys but `scene_name`, then per box the instance row and token, the
    devkit `PredictHelper` future (8 s, agent frame, zero-padded to 16) and the visibility level."""
    annotated = "gt_boxes" in bevformer
    assert list(info) == (UNIAD_KEYS if annotated else UNIAD_KEYS[:14])
    for key in UNIAD_KEYS[:20] if annotated else UNIAD_KEYS[:14]:
        assert_same(info[key], bevformer[key], key, tolerance=0)
    if not annotated:
        return
    sample = nusc.get("sample", info["token"])
    annotations = [nusc.get("sample_annotation", token) for token in sample["anns"]]
    np.testing.assert_array_equal(info["gt_inds"], [nusc.getind("instance", a["instance_token"]) for a in annotations])
    assert info["gt_inds"].dtype == np.int64
    assert info["gt_ins_tokens"].tolist() == [a["instance_token"] for a in annotations]
    assert info["visibility_tokens"].tolist() == [int(a["visibility_token"]) for a in annotations]
    assert info["fut_traj"].shape == info["fut_traj_valid_mask"].shape == (len(annotations), 16, 2)
    for n, annotation in enumerate(annotations):
        future = helper.get_future_for_agent(annotation["instance_token"], sample["token"], seconds=8,
                                             in_agent_frame=True)
        steps = len(future)
        np.testing.assert_allclose(info["fut_traj"][n, :steps], future.reshape(-1, 2), atol=1e-9, rtol=0)
        assert not info["fut_traj"][n, steps:].any()
        assert info["fut_traj_valid_mask"][n, :steps].all() and not info["fut_traj_valid_mask"][n, steps:].any()


VAD_KEYS = ["lidar_path", "token", "prev", "next", "can_bus", "frame_idx", "sweeps", "cams", "scene_token",
            "lidar2ego_translation", "lidar2ego_rotation", "ego2global_translation", "ego2global_rotation",
            "timestamp", "fut_valid_flag", "map_location", "gt_boxes", "gt_names", "gt_velocity", "num_lidar_pts",
            "num_radar_pts", "valid_flag", "gt_agent_fut_trajs", "gt_agent_fut_masks", "gt_agent_lcf_feat",
            "gt_agent_fut_yaw", "gt_agent_fut_goal", "gt_ego_his_trajs", "gt_ego_fut_trajs", "gt_ego_fut_masks",
            "gt_ego_fut_cmd", "gt_ego_lcf_feat"]


def xyzw_yaw(x, y, z, w) -> float:
    """The yaw of a quaternion handed over as (x, y, z, w), not normalised (VAD's `quart_to_rpy`)."""
    return np.arctan2(2 * (w * z + x * y), 1 - 2 * (z * z + y * y))


def lidar_position(nusc, sample: dict) -> np.ndarray:
    """The keyframe LIDAR_TOP's position, global frame: translation of ego pose @ calibration."""
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    return (homogeneous(pose["translation"], pose["rotation"]) @ homogeneous(cs["translation"], cs["rotation"]))[:3, 3]


def vad_expected(nusc, can_bus, info: dict, fixes=()) -> dict:
    """VAD's keys of one info, recomputed sample by sample with devkit `Box` moves and `NuScenesCanBus`
    messages, following the steps /docs consumer-formats §7 and §14 describe (faults kept unless fixed)."""
    from nuscenes.utils.data_classes import Box

    sample = nusc.get("sample", info["token"])
    scene = nusc.get("scene", sample["scene_token"])
    location = nusc.get("log", scene["log_token"])["location"]
    chain = sample
    for _ in range(6):
        chain = nusc.get("sample", chain["next"]) if chain and chain["next"] else None
    expected = {"fut_valid_flag": chain is not None, "map_location": location}
    if "gt_boxes" not in info:
        return expected
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])

    def into_lidar(box):
        box.translate(-np.array(pose["translation"]))
        box.rotate(Quaternion(pose["rotation"]).inverse)
        box.translate(-np.array(cs["translation"]))
        box.rotate(Quaternion(cs["rotation"]).inverse)
        return box

    category_position = {c["name"]: i for i, c in enumerate(nusc.category)}
    _, boxes, _ = nusc.get_sample_data(sample["data"]["LIDAR_TOP"])
    trajs, masks, yaws, goals, features = [], [], [], [], []
    for n, token in enumerate(sample["anns"]):
        annotation = nusc.get("sample_annotation", token)
        previous = boxes[n]
        traj, mask, yaw = np.zeros((6, 2)), np.zeros(6), np.zeros(6)
        for step in range(6):
            if not annotation["next"]:
                break
            annotation = nusc.get("sample_annotation", annotation["next"])
            box = into_lidar(Box(annotation["translation"], annotation["size"], Quaternion(annotation["rotation"])))
            traj[step] = box.center[:2] - previous.center[:2]
            mask[step] = 1
            q, p = box.orientation, previous.orientation
            change = xyzw_yaw(q.x, q.y, q.z, q.w) - xyzw_yaw(p.x, p.y, p.z, p.w)
            yaw[step] = (change + np.pi) % (2 * np.pi) - np.pi if "fut-yaw" in fixes else change
            previous = box
        positions = np.cumsum(traj, axis=0)
        if "goal" in fixes:
            moved = positions[-1]
            static = np.linalg.norm(moved) < 1.0
        else:
            moved = positions[-1] - positions[0]
            static = max(moved) < 1.0
        goals.append(9 if static else (np.arctan2(moved[1], moved[0]) + np.pi) // (np.pi / 4))
        first = nusc.get("sample_annotation", token)
        global_velocity = np.array([*nusc.box_velocity(token)[:2], 0.0])
        velocity = (Quaternion(cs["rotation"]).rotation_matrix.T @ Quaternion(pose["rotation"]).rotation_matrix.T
                    @ global_velocity)[:2]
        features.append([*boxes[n].center[:2], boxes[n].orientation.yaw_pitch_roll[0], *velocity, *first["size"],
                         category_position.get(first["category_name"], -1)])
        trajs.append(traj.reshape(-1))
        masks.append(mask)
        yaws.append(yaw)
    count = len(sample["anns"])
    expected.update({"gt_agent_fut_trajs": np.array(trajs).reshape(count, 12),
                     "gt_agent_fut_masks": np.array(masks).reshape(count, 6),
                     "gt_agent_lcf_feat": np.array(features).reshape(count, 9),
                     "gt_agent_fut_yaw": np.array(yaws).reshape(count, 6),
                     "gt_agent_fut_goal": np.array(goals, dtype=float).reshape(count)})

    lidar_from_global = np.linalg.inv(homogeneous(pose["translation"], pose["rotation"])
                                      @ homogeneous(cs["translation"], cs["rotation"]))

    def local(points):
        return (lidar_from_global[:3, :3] @ np.asarray(points).T).T + lidar_from_global[:3, 3]

    # Past: positions of this and the 2 earlier samples; before the scene start, step back by the last
    # known step.
    past, past_steps, current = [None] * 3, [None] * 3, sample
    for i in (2, 1, 0):
        if current is not None:
            past[i] = lidar_position(nusc, current)
            past_steps[i] = (lidar_position(nusc, nusc.get("sample", current["next"])) - past[i]
                             if current["next"] else np.zeros(3))
            current = nusc.get("sample", current["prev"]) if current["prev"] else None
        else:
            past[i], past_steps[i] = past[i + 1] - past_steps[i + 1], past_steps[i + 1]
    future, current = [], sample
    while len(future) < 7:
        future.append(lidar_position(nusc, current))
        if not current["next"]:
            break
        current = nusc.get("sample", current["next"])
    future_masks = [1.0] * (len(future) - 1) + [0.0] * (7 - len(future))
    future += [future[-1]] * (7 - len(future))
    past_local, future_local = local(past), local(future)
    final_x = future_local[-1][0]
    command = [1, 0, 0] if final_x >= 2 else [0, 1, 0] if final_x <= -2 else [0, 0, 1]
    his, fut = np.diff(past_local, axis=0), np.diff(future_local, axis=0)

    def ego_yaw(record) -> float:
        w, x, y, z = record["rotation"]
        return xyzw_yaw(x, y, z, w) if "ego-yaw" in fixes else xyzw_yaw(w, x, y, z)

    neighbour = (nusc.get("sample", sample["prev"]) if sample["prev"] else nusc.get("sample", sample["next"]))
    other = nusc.get("ego_pose", nusc.get("sample_data", neighbour["data"]["LIDAR_TOP"])["ego_pose_token"])
    here_yaw = ego_yaw(pose)
    if sample["prev"]:
        rate, distance = (here_yaw - ego_yaw(other)) / 0.5, np.subtract(pose["translation"], other["translation"])
    else:
        rate, distance = (ego_yaw(other) - here_yaw) / 0.5, np.subtract(other["translation"], pose["translation"])
    speed = np.linalg.norm(distance[:2]) / 0.5
    try:
        poses = can_bus.get_messages(scene["name"], "pose")
        steering = can_bus.get_messages(scene["name"], "steeranglefeedback")
        nearest_pose = min(poses, key=lambda m: (abs(m["utime"] - sample["timestamp"]), -m["utime"]))
        nearest_steering = min(steering, key=lambda m: (abs(m["utime"] - sample["timestamp"]), -m["utime"]))
        v0 = nearest_pose["vel"][0]
        value = -nearest_steering["value"] if location.startswith("singapore") else nearest_steering["value"]
        curvature = 2 * value / 2.588
    except Exception:
        v0 = np.sqrt((his[-1][0] + fut[0][0]) ** 2 + (his[-1][1] + fut[0][1]) ** 2)
        curvature = 0.0
    expected.update({
        "gt_ego_his_trajs": his[:, :2], "gt_ego_fut_trajs": fut[:, :2], "gt_ego_fut_masks": np.array(future_masks),
        "gt_ego_fut_cmd": np.array(command, dtype=float),
        "gt_ego_lcf_feat": np.array([speed * np.cos(here_yaw + np.pi / 2), speed * np.sin(here_yaw + np.pi / 2),
                                     *info["can_bus"][7:9], rate, 4.084, 1.85, v0, curvature])})
    return expected


def assert_vad_info(nusc, can_bus, info: dict, bevformer: dict, fixes=()) -> None:
    """A VAD info: BEVFormer's keys but `scene_name`, VAD's two scene keys, and its ten float32 arrays equal
    to `vad_expected` to one float32 step (sums of float64 terms may round to the neighbouring float32)."""
    annotated = "gt_boxes" in bevformer
    assert list(info) == (VAD_KEYS if annotated else VAD_KEYS[:16])
    for key in VAD_KEYS[:14] + (VAD_KEYS[16:22] if annotated else []):
        assert_same(info[key], bevformer[key], key, tolerance=0)
    expected = vad_expected(nusc, can_bus, info, fixes)
    assert info["fut_valid_flag"] is expected["fut_valid_flag"] and info["map_location"] == expected["map_location"]
    for key in VAD_KEYS[22:] if annotated else []:
        assert info[key].dtype == np.float32 and info[key].shape == expected[key].shape, key
        np.testing.assert_allclose(info[key], expected[key].astype(np.float32), rtol=2e-7, atol=1e-6, err_msg=key)
