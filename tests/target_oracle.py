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
