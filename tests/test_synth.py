"""occprep synth: a synthetic nuScenes-format dataset, checked against nuscenes-devkit and the format docs."""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from nuscenes.utils import splits

from helpers import digests
from occprep.cli import cli
from occprep.config import dataset_config, occupancy_format
from occprep.synth import synthesize
from occprep.synth.occupancy import Grid, Solid
from occprep.synth.scenes import official_scenes
from occprep.synth.spec import load_synth_spec
from occprep.tables import read_tables

MINI = "v1.0-mini"
SKIPPED = "scene-0553"


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """3 mini scenes x 6 samples with both occupancy formats, tiny blobs, one scene without CAN bus."""
    out = tmp_path_factory.mktemp("synth")
    summary = synthesize(out, MINI, scenes=3, samples_per_scene=6, seed=7, blobs="tiny", without_can_bus=[SKIPPED])
    return out, summary


@pytest.fixture(scope="session")
def tables(dataset):
    return read_tables(dataset[0] / "nuscenes" / MINI)


@pytest.fixture(scope="session")
def nusc(dataset):
    from nuscenes.nuscenes import NuScenes

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return NuScenes(MINI, str(dataset[0] / "nuscenes"), verbose=False)


def _by_token(records):
    return {r.token: r for r in records}


def test_foreign_keys_resolve(tables):
    idx = {name: _by_token(getattr(tables, name)) for name in
           ("sample", "scene", "log", "calibrated_sensor", "sensor", "instance", "category", "ego_pose",
            "sample_data", "sample_annotation", "attribute")}
    visibility = {v.token for v in tables.visibility}
    assert all(len(t) == 32 and int(t, 16) >= 0 for name in idx if name != "sensor" for t in idx[name])
    for s in tables.scene:
        assert s.log_token in idx["log"]
    for s in tables.sample:
        assert s.scene_token in idx["scene"]
    for c in tables.calibrated_sensor:
        assert c.sensor_token in idx["sensor"]
    for d in tables.sample_data:
        assert d.sample_token in idx["sample"] and d.calibrated_sensor_token in idx["calibrated_sensor"]
        assert d.ego_pose_token == d.token and idx["ego_pose"][d.token].timestamp == d.timestamp
    for a in tables.sample_annotation:
        assert a.sample_token in idx["sample"] and a.instance_token in idx["instance"]
        assert a.visibility_token in visibility
        assert all(t in idx["attribute"] for t in a.attribute_tokens)
    for i in tables.instance:
        assert i.category_token in idx["category"]
    for m in tables.map:
        assert all(t in idx["log"] for t in m.log_tokens)
    assert {t.token for t in tables.log} == {t for m in tables.map for t in m.log_tokens}
    assert len(tables.category) == 23 and len(tables.attribute) == 8 and len(tables.sensor) == 12


def _walk(first, records):
    chain, token = [], first
    while token:
        chain.append(records[token])
        token = records[token].next
    return chain


def test_chains_and_counts(tables):
    samples, anns, sds = (_by_token(getattr(tables, n)) for n in ("sample", "sample_annotation", "sample_data"))
    for records in (samples, anns, sds):
        for r in records.values():
            assert r.next == "" or records[r.next].prev == r.token
            assert r.prev == "" or records[r.prev].next == r.token
    for scene in tables.scene:
        chain = _walk(scene.first_sample_token, samples)
        assert len(chain) == scene.nbr_samples == 6 and chain[-1].token == scene.last_sample_token
        assert all(a.timestamp < b.timestamp for a, b in zip(chain, chain[1:]))
    for inst in tables.instance:
        chain = _walk(inst.first_annotation_token, anns)
        assert len(chain) == inst.nbr_annotations and chain[-1].token == inst.last_annotation_token
        assert all(a.instance_token == inst.token for a in chain)
    assert len(tables.sample_annotation) == sum(i.nbr_annotations for i in tables.instance)
    per_sample = len(tables.sample_annotation) / len(tables.sample)
    assert 15 <= per_sample <= 45, per_sample


def test_sensor_chains_follow_the_real_timing(tables):
    samples = _by_token(tables.sample)
    channel = {c.token: s.channel for c in tables.calibrated_sensor for s in tables.sensor if s.token == c.sensor_token}
    scene_of = {}
    chains = defaultdict(list)
    for d in tables.sample_data:
        chains[(samples[d.sample_token].scene_token, channel[d.calibrated_sensor_token])].append(d)
        scene_of[d.token] = samples[d.sample_token].scene_token
    assert len(chains) == 3 * 12
    rate = {"CAM": 12.0, "LID": 20.0, "RAD": 13.0}
    for (scene_token, ch), records in chains.items():
        records.sort(key=lambda r: r.timestamp)
        assert records[0].prev == "" and records[-1].next == "" and records[0].is_key_frame and records[-1].is_key_frame
        assert [r.next for r in records[:-1]] == [r.token for r in records[1:]]
        keys = [r for r in records if r.is_key_frame]
        scene_samples = sorted((s for s in tables.sample if s.scene_token == scene_token), key=lambda s: s.timestamp)
        assert [k.sample_token for k in keys] == [s.token for s in scene_samples]
        for r in records:
            owner = samples[r.sample_token]
            # a non-keyframe reading belongs to the next sample in time, as in the real tables
            assert owner.timestamp + 60_000 >= r.timestamp and (r.is_key_frame or owner.prev == ""
                                                                or samples[owner.prev].timestamp < r.timestamp)
            folder = "samples" if r.is_key_frame else "sweeps"
            ext = {"CAM": "jpg", "LID": "pcd.bin", "RAD": "pcd"}[ch[:3]]
            assert r.filename.startswith(f"{folder}/{ch}/n0") and r.filename.endswith(f"__{ch}__{r.timestamp}.{ext}")
            assert (r.width, r.height) == ((1600, 900) if ch.startswith("CAM") else (0, 0))
        hz = (len(records) - 1) / ((records[-1].timestamp - records[0].timestamp) * 1e-6)
        assert abs(hz - rate[ch[:3]]) < 1.5, (ch, hz)
        if ch == "LIDAR_TOP":
            assert [k.timestamp for k in keys] == [s.timestamp for s in scene_samples]


def test_rig_is_the_real_calibration(tables, real_mini):
    """The rig (configs/rig-nuscenes.json) is scene-0916's calibration, in any v1.0-mini that holds it."""
    [scene] = [s["token"] for s in real_mini.table("scene") if s["name"] == "scene-0916"]
    samples = {s["token"] for s in real_mini.table("sample") if s["scene_token"] == scene}
    used = {d["calibrated_sensor_token"] for d in real_mini.table("sample_data") if d["sample_token"] in samples}
    real_cal = {(c["sensor_token"], tuple(c["translation"]), tuple(c["rotation"]))
                for c in real_mini.table("calibrated_sensor") if c["token"] in used}
    ours = {(c.sensor_token, tuple(c.translation), tuple(c.rotation)) for c in tables.calibrated_sensor}
    assert ours == real_cal


def test_devkit_loads_without_warnings(dataset, nusc, tables):
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus

    assert len(nusc.sample) == 18 and len(nusc.scene) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample = nusc.sample[2]
        path, boxes, intrinsic = nusc.get_sample_data(sample["data"]["CAM_FRONT"])
        assert Path(path).is_file() and intrinsic.shape == (3, 3)
        tracked = [a for a in nusc.sample_annotation if a["prev"] and a["next"]]
        velocities = np.array([nusc.box_velocity(a["token"]) for a in tracked])
        assert np.isfinite(velocities[:, :2]).all() and (np.abs(velocities[:, 2]) < 1e-9).all()
        can = NuScenesCanBus(dataroot=str(dataset[0]))
        assert can.get_messages("scene-0061", "pose")[0]["utime"] < nusc.get("sample", nusc.scene[0][
            "first_sample_token"])["timestamp"]


def test_moving_attributes_match_velocities(nusc):
    for ann in nusc.sample_annotation:
        if not (ann["prev"] and ann["next"]) or not ann["attribute_tokens"]:
            continue
        name = nusc.get("attribute", ann["attribute_tokens"][0])["name"]
        speed = np.hypot(*nusc.box_velocity(ann["token"])[:2])
        if name in ("vehicle.parked", "vehicle.stopped", "pedestrian.standing", "cycle.without_rider"):
            assert speed < 0.05
        if name in ("vehicle.moving", "cycle.with_rider"):
            assert speed > 1.0


def test_can_bus_files(dataset, tables):
    out, summary = dataset
    assert summary.can_bus_skipped == {SKIPPED: "--without-can-bus"}
    assert not (out / "can_bus" / f"{SKIPPED}_pose.json").exists()
    raw = (out / "can_bus" / "scene-0061_pose.json").read_text()
    messages = json.loads(raw)
    assert list(messages[0]) == ["accel", "orientation", "pos", "rotation_rate", "utime", "vel"]
    assert raw.index('"accel"') < raw.index('"orientation"') < raw.index('"pos"') < raw.index('"utime"')
    utime = np.array([m["utime"] for m in messages])
    assert np.all(np.diff(utime) == 20_000)
    meta = json.loads((out / "can_bus" / "scene-0061_meta.json").read_text())
    assert meta["POSE"]["message_count"] == len(messages) and abs(meta["POSE"]["message_freq"] - 50.0) < 1e-6
    scene = next(s for s in tables.scene if s.name == "scene-0061")
    samples = [s for s in tables.sample if s.scene_token == scene.token]
    assert utime[0] < min(s.timestamp for s in samples) and utime[-1] <= max(s.timestamp for s in samples)
    pos = np.array([m["pos"] for m in messages])
    orientation = np.array([m["orientation"] for m in messages])
    sample_of = {s.token for s in samples}
    for d in tables.sample_data:
        if d.sample_token in sample_of and utime[0] <= d.timestamp <= utime[-1]:
            pose = next(e for e in tables.ego_pose if e.token == d.ego_pose_token) if d.is_key_frame else None
            if pose is None:
                continue
            x = np.interp(d.timestamp, utime, pos[:, 0])
            y = np.interp(d.timestamp, utime, pos[:, 1])
            assert abs(x - pose.translation[0]) < 0.02 and abs(y - pose.translation[1]) < 0.02
            w = np.interp(d.timestamp, utime, orientation[:, 0])
            assert abs(w - pose.rotation[0]) < 1e-3
    # vel is in the ego frame: forward speed, no sideways part; matches the pose increments
    vel = np.array([m["vel"] for m in messages])
    step = np.hypot(*np.diff(pos[:, :2], axis=0).T) / 0.02
    assert np.allclose(vel[1:, 0], step, atol=0.05) and np.all(vel[:, 1:] == 0)


def _annotation_in_frame(nusc, sample, frame):
    """Boxes of the sample's annotations in the LIDAR_TOP ('lidar') or ego frame, via the devkit."""
    from pyquaternion import Quaternion

    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    _, boxes, _ = nusc.get_sample_data(sd["token"])
    if frame == "ego":
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        for box in boxes:
            box.rotate(Quaternion(cs["rotation"]))
            box.translate(np.array(cs["translation"]))
    return boxes


@pytest.mark.parametrize("name", ["openocc-v1", "occ3d"])
def test_box_lands_where_the_formula_says(name):
    fmt = occupancy_format(name)
    grid = Grid(fmt)
    x, y, z = 7, 120, 9
    centre = np.array(fmt.point_cloud_range[:3]) + (np.array([x, y, z]) + 0.5) * fmt.voxel_size
    # grid_from_global = identity: the box is given directly in the grid frame
    solid = Solid(centre[None], np.array([[0.1, 0.1, 0.1]]), np.zeros(1), np.array([3]), np.array([[1.5, -2.0]]))
    vox = grid.voxelise(np.eye(4), [solid], load_synth_spec().visibility_rule)
    assert vox.volume(vox.label)[x, y, z] == 3 and (vox.label == 3).sum() == 1
    flat = np.ravel_multi_index((x, y, z), fmt.grid, order="F")
    assert np.allclose(vox.flow(np.array([flat, flat + 1])), [[1.5, -2.0], [0.0, 0.0]])
    if name == "openocc-v1":
        assert z * 40000 + y * 200 + x == flat


@pytest.mark.parametrize("name", ["openocc-v1", "occ3d"])
def test_a_box_shadows_the_band_behind_it(name):
    """Seen from a LiDAR at the grid origin, a car 10 m ahead hides the voxels behind it (up to its top,
    `shadow_depth_m` deep), while the voxels in front of it, beside it and above it stay observed."""
    fmt, rule = occupancy_format(name), load_synth_spec().visibility_rule
    grid, v = Grid(fmt), fmt.voxel_size
    # the grid frame is the global frame raised to the sensor (LiDAR frame) or left on the ground (ego frame)
    height = 1.8 if fmt.frame == "lidar" else 0.0
    grid_from_global = np.eye(4)
    grid_from_global[2, 3] = -height
    car = Solid(np.array([[10.0, 0.0, 0.8]]), np.array([[2.0, 4.0, 1.6]]), np.zeros(1), np.array([3]),
                np.zeros((1, 2)))
    vox = grid.voxelise(grid_from_global, [car], rule)
    observed, label = vox.volume(vox.observed), vox.volume(vox.label)

    def voxel(x, y, z_global):
        return tuple(np.floor((np.array([x, y, z_global - height]) - grid.lower) / v).astype(int))

    ground = fmt.classes.index("driveable_surface")
    assert label[voxel(15.0, 0.1, -0.05)] == ground and not observed[voxel(15.0, 0.1, -0.05)]
    assert not observed[voxel(13.0, 0.1, 1.0)] and not observed[voxel(11.5 + rule.shadow_depth_m, 0.1, 0.5)]
    assert observed[voxel(12.1 + rule.shadow_depth_m + v, 0.1, 0.5)]  # beyond the band
    assert observed[voxel(6.0, 0.1, 0.5)] and observed[voxel(15.0, 0.1, 3.0)]  # in front, above the top
    assert observed[voxel(15.0, 6.0, 0.5)] and observed[voxel(-15.0, 0.1, 0.5)]  # beside, behind the LiDAR
    assert label[voxel(10.0, 0.1, 0.5)] == 3 and observed[voxel(10.0, 0.1, 0.5)]  # the car itself
    assert observed[voxel(15.0, 0.1, -0.9)]  # below the ground layer: empty world, observed
    invalid = np.flatnonzero(~vox.observed)
    assert 0 < len(invalid) < 5000 and np.all(label.ravel(order="F")[invalid] != 3)
    assert np.all(vox.camera <= vox.observed) and vox.volume(vox.camera)[voxel(15.0, 6.0, 0.5)]
    assert not vox.volume(vox.camera)[voxel(-38.0, -38.0, 0.5)] and observed[voxel(-38.0, -38.0, 0.5)]


def test_openocc_v1_layout(dataset, nusc):
    out, summary = dataset
    fmt = occupancy_format("openocc-v1")
    car = fmt.classes.index("car")
    index = {split: json.loads((out / "occ_gt_release_v1_0" / f"occ_gt_{split}.json").read_text())
             for split in ("train", "val")}
    assert set(index["val"]) == {"scene-0103"} and set(index["train"]) == {"scene-0061", SKIPPED}
    hits = total = 0
    for scene in nusc.scene:
        split = "val" if scene["name"] in splits.mini_val else "train"
        token, frame_idx = scene["first_sample_token"], 0
        while token:
            entry = index[split][scene["name"]][token]
            assert entry["occ_gt_path"] == (f"./data/occ_gt_release_v1_0/{split}/{scene['name']}/"
                                            f"{frame_idx:03d}_occ.npy")
            local = {k: out / v[len("./data/"):] for k, v in entry.items()}
            occ, flow, invalid = (np.load(local[k]) for k in ("occ_gt_path", "flow_gt_path", "occ_invalid_path"))
            assert occ.ndim == 2 and occ.shape[1] == 2 and occ.dtype.kind == "i"
            assert flow.shape == occ.shape and flow.dtype == np.float32 and invalid.ndim == 1
            # the invalid set is the objects' and blocks' shadows: tens of thousands, not most of the grid
            assert invalid.dtype == np.int32 and np.all(np.diff(invalid) > 0)
            assert 1000 < len(invalid) < 100000 and invalid.min() >= 0 and invalid.max() < 640000
            assert not np.isin(occ[occ[:, 1] != fmt.classes.index("driveable_surface"), 0], invalid).any()
            assert np.all(np.diff(occ[:, 0]) > 0) and occ[:, 0].max() < 640000 and occ[:, 1].max() < 16
            dense = np.full(640000, fmt.free_label)
            dense[occ[:, 0]] = occ[:, 1]
            # the ground layer is driveable surface except under objects and background blocks
            assert 30000 < (dense == fmt.classes.index("driveable_surface")).sum() <= 40000
            for box in _annotation_in_frame(nusc, nusc.get("sample", token), "lidar"):
                ijk = np.floor((box.center - np.array(fmt.point_cloud_range[:3])) / fmt.voxel_size).astype(int)
                if box.name == "vehicle.car" and np.all((ijk >= 0) & (ijk < fmt.grid)):
                    total += 1
                    hits += dense[ijk[2] * 40000 + ijk[1] * 200 + ijk[0]] == car
            token = nusc.get("sample", token)["next"]
            frame_idx += 1
    assert total > 10 and hits / total > 0.9, (hits, total)


def test_occ3d_layout(dataset, nusc):
    out, _ = dataset
    fmt = occupancy_format("occ3d")
    annotations = json.loads((out / "nuscenes" / "annotations.json").read_text())
    assert annotations["val_split"] == ["scene-0103"]
    hits = total = 0
    for sample in nusc.sample:
        scene = nusc.get("scene", sample["scene_token"])["name"]
        path = out / "nuscenes" / "gts" / scene / sample["token"] / "labels.npz"
        assert annotations["scene_infos"][scene][sample["token"]]["gt_path"] == f"gts/{scene}/{sample['token']}/labels.npz"
        with np.load(path) as labels:
            assert sorted(labels.files) == ["mask_camera", "mask_lidar", "semantics"]
            semantics, mask_lidar, mask_camera = labels["semantics"], labels["mask_lidar"], labels["mask_camera"]
        for array in (semantics, mask_lidar, mask_camera):
            assert array.dtype == np.uint8 and array.shape == (200, 200, 16)
        assert semantics.max() <= 17 and set(np.unique(mask_lidar)) <= {0, 1}
        assert np.all(mask_camera <= mask_lidar)
        ground = semantics[:, :, 2] == fmt.classes.index("driveable_surface")
        assert 30000 < ground.sum() and (semantics[:, :, :2] == fmt.free_label).all()
        # below the ground layer (z < 2) the world is empty and observed; shadows are a small part of the grid
        assert mask_lidar[:, :, :2].all() and mask_lidar[100, 100].all()
        assert 1000 < (mask_lidar == 0).sum() < 150000
        boxes = (semantics != fmt.free_label) & (semantics != fmt.classes.index("driveable_surface"))
        assert boxes.any() and mask_lidar[boxes].all() and not mask_lidar[~boxes].all()
        assert mask_camera[0, 0].sum() == 0 and np.array_equal(mask_camera[60:140, 60:140], mask_lidar[60:140, 60:140])
        for box in _annotation_in_frame(nusc, sample, "ego"):
            ijk = np.floor((box.center - np.array(fmt.point_cloud_range[:3])) / fmt.voxel_size).astype(int)
            if box.name == "vehicle.car" and np.all((ijk >= 0) & (ijk < fmt.grid)):
                total += 1
                hits += semantics[tuple(ijk)] == fmt.classes.index("car")
    assert total > 10 and hits / total > 0.9, (hits, total)


def test_real_occ3d_file_has_the_same_keys_and_dtypes(dataset, real_occ3d_frame):
    ours = next((dataset[0] / "nuscenes" / "gts").rglob("labels.npz"))
    with np.load(next(real_occ3d_frame.rglob("labels.npz"))) as a, np.load(ours) as b:
        assert sorted(a.files) == sorted(b.files)
        assert all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape for k in a.files)


def test_tiny_blobs_open(dataset, nusc):
    from nuscenes.utils.data_classes import LidarPointCloud, RadarPointCloud
    from PIL import Image

    sample = nusc.sample[0]
    root = dataset[0] / "nuscenes"
    with Image.open(root / nusc.get("sample_data", sample["data"]["CAM_BACK"])["filename"]) as image:
        assert image.size == (1600, 900) and image.format == "JPEG"
    lidar = LidarPointCloud.from_file(str(root / nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["filename"]))
    assert lidar.points.shape[0] == 4 and lidar.points.shape[1] > 0
    radar = RadarPointCloud.from_file(str(root / nusc.get("sample_data", sample["data"]["RADAR_FRONT"])["filename"]))
    assert radar.points.shape[0] == 18
    assert dataset[1].blob_files == len(nusc.sample_data)


def test_same_seed_same_bytes(tmp_path):
    for run in ("a", "b"):
        synthesize(tmp_path / run, MINI, scenes=2, samples_per_scene=3, seed=3, blobs="tiny")
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert len(a) > 100 and a == b
    synthesize(tmp_path / "c", MINI, scenes=2, samples_per_scene=3, seed=4, occ=[])
    assert digests(tmp_path / "c")["nuscenes/v1.0-mini/sample.json"] != a["nuscenes/v1.0-mini/sample.json"]


def test_trainval_and_test_scene_names(tmp_path):
    summary = synthesize(tmp_path / "tv", "v1.0-trainval", scenes=3, samples_per_scene=2)
    names = [s.name for s in read_tables(tmp_path / "tv" / "nuscenes" / "v1.0-trainval").scene]
    assert names[0] in splits.train and names[1] in splits.val and summary.occ_formats == []
    summary = synthesize(tmp_path / "te", "v1.0-test", scenes=2, samples_per_scene=2, occ=["occ3d"])
    test_tables = read_tables(tmp_path / "te" / "nuscenes" / "v1.0-test")
    assert [s.name for s in test_tables.scene] == splits.test[:2]
    assert test_tables.sample_annotation == [] and test_tables.instance == [] and summary.occ_frames == 0
    assert summary.can_bus_scenes == [] and not (tmp_path / "te" / "can_bus").exists()


def test_blacklisted_scenes_get_no_can_bus(tmp_path):
    blacklisted = f"scene-{dataset_config('nuscenes').can_bus_blacklist[0]:04d}"
    position = [i for i, s in enumerate(official_scenes("v1.0-trainval")) if s.name == blacklisted][0]
    assert position < 200
    # only the metadata of the blacklisted scene matters here: write up to it with tiny scenes
    summary = synthesize(tmp_path, "v1.0-trainval", scenes=position + 1, samples_per_scene=2, occ=[])
    assert summary.can_bus_skipped[blacklisted] == "in the devkit's CAN bus blacklist"
    assert not (tmp_path / "can_bus" / f"{blacklisted}_pose.json").exists()


def test_cli_help_and_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["synth", "--help"])
    for flag in ("--out", "--version", "--scenes", "--samples-per-scene", "--seed", "--occ", "--blobs",
                 "--without-can-bus", "--report", "--quiet"):
        assert flag in result.output
    result = runner.invoke(cli, ["synth", "--out", str(tmp_path / "x"), "--scenes", "1", "--occ", "voxels"])
    assert result.exit_code != 0 and "--occ voxels" in str(result.exception)
    assert not (tmp_path / "x").exists()
    report = tmp_path / "r.json"
    result = runner.invoke(cli, ["synth", "--out", str(tmp_path / "y"), "--scenes", "1", "--samples-per-scene", "2",
                                 "--occ", "", "--quiet", "--report", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["scenes"] == 1 and data["samples"] == 2 and data["occ_frames"] == 0
