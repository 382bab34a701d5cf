"""Unity synthetic datasets → nuScenes tables, CAN bus, infos; devkit as the oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from occprep.cli import cli
from occprep.errors import OccprepError
from occprep.pickles import load_pickle
from occprep.reporting import Reporter
from occprep.tables import read_tables
from occprep.unity import convert, fake, perception, solo, visibility
from occprep.unity.dataset import detect_format, export_nuscenes
from occprep.unity.mapping import UnityConfig, unity_config
from occprep.unity.totables import build_tables

QUIET = Reporter("test", quiet=True)


def run_cli(*args: str) -> None:
    cli.main(list(args), standalone_mode=False)


def truth_annotations(world: fake.FakeWorld, step: int):
    """Expected nuScenes global boxes (by instance id) of a generated world at `step`, with the
    first camera's visible pixels, the object's visible share and its rendered pixels alone."""
    ids, _, position, rotation, size, velocity, shares = world.objects(step)
    _, _, t, r, s, pixels = world.camera_boxes(step, world.cameras[0][1])
    rendered = world.rendered_pixels(t, r, s)
    return {i: (convert.position_to_nuscenes(position[k]), convert.body_rotation_to_nuscenes(rotation[k]),
                convert.box_size_to_nuscenes(size[k]), convert.position_to_nuscenes(velocity[k]), pixels[k],
                shares[k], rendered[k]) for k, i in enumerate(ids)}


LEVEL_OF_SHARE = {1.0: "4", 0.7: "3", 0.5: "2", 0.0: "1"}
"""The visibility token a generated object's visible share must get (bins 0-40-60-80-100 %)."""


def assert_boxes_match_truth(tables, worlds, n_steps):
    """Every annotation equals a generated object converted with the rules (any ego convention,
    any scene order): same centre, rotation, size, visible pixels, visibility level (objects of
    30+ rendered pixels, where pixel counting is finer than the level bins), one instance per
    object. Returns the visibility tokens checked."""
    samples = {s.token: s for s in tables.sample}
    step_of = {}
    for scene in tables.scene:
        token, step = scene.first_sample_token, 0
        while token:
            step_of[token] = step
            token, step = samples[token].next, step + 1
    instance_id, checked = {}, set()
    assert len(tables.sample_annotation) == sum(w.n_objects for w in worlds) * n_steps
    truth_at = [{i: t for world in worlds for i, t in truth_annotations(world, step).items()}
                for step in range(n_steps)]
    for ann in tables.sample_annotation:
        truth = truth_at[step_of[ann.sample_token]]
        matches = [i for i, t in truth.items() if np.allclose(t[0], ann.translation, atol=1e-6)]
        assert len(matches) == 1
        t, q, s, _, px, share, rendered = truth[matches[0]]
        assert np.allclose(np.abs(np.dot(q, ann.rotation)), 1, atol=1e-9)
        assert np.allclose(s, ann.size) and ann.num_lidar_pts == px
        if rendered >= 30 or px == 0:
            assert ann.visibility_token == LEVEL_OF_SHARE[share]
            checked.add(ann.visibility_token)
        instance_id.setdefault(ann.instance_token, matches[0])
        assert instance_id[ann.instance_token] == matches[0]
    return checked


# ----------------------------------------------------------------------------- the real samples


def test_solo_crate_projects_onto_unitys_2d_box_through_devkit(real_unity_solo, tmp_path):
    from nuscenes.nuscenes import NuScenes
    from nuscenes.utils.geometry_utils import view_points

    export_nuscenes(real_unity_solo, tmp_path, "v1.0-unity", "auto", unity_config(), QUIET)
    nusc = NuScenes("v1.0-unity", str(tmp_path), verbose=False)
    scene = next(s for s in nusc.scene if s["description"].endswith("/0"))
    sample = nusc.get("sample", scene["first_sample_token"])
    _, boxes, intrinsic = nusc.get_sample_data(sample["data"]["CAM_FRONT"])
    frame = json.loads((real_unity_solo / "sequence.0" / "step0.frame_data.json").read_text())
    crate = next(b for b in boxes if np.isclose(b.center[2], 4.585796))  # instance 3: 4.59 m ahead of the camera
    corners = view_points(crate.corners(), intrinsic, normalize=True)[:2]
    unity_2d = next(v for a in frame["captures"][0]["annotations"] if a["id"] == "bounding box"
                    for v in a["values"] if v["instanceId"] == 3)
    assert unity_2d["origin"] == [167.0, 308.0] and unity_2d["dimension"] == [228.0, 192.0]
    assert np.allclose(corners.min(axis=1), unity_2d["origin"], atol=0.5)
    assert np.allclose(corners.max(axis=1) - corners.min(axis=1), unity_2d["dimension"], atol=0.5)


def test_solo_sample_sequences_come_from_folders_and_visibility_from_rendered_info(real_unity_solo):
    unity = build_tables(solo.read_captures(real_unity_solo), unity_config())
    assert unity.summary["scenes"] == 2 and unity.camera_channels == ("CAM_FRONT",)
    assert [s.description for s in unity.tables.scene] == ["Unity /0", "Unity /1"]  # folder, not the frame's field
    assert sorted(a.num_lidar_pts for a in unity.tables.sample_annotation) == [35950, 47768]  # sequence.1: no 3D boxes
    assert [a.visibility_token for a in unity.tables.sample_annotation] == ["4", "4"]  # two unoccluded crates


def test_solo_sample_visible_pixels_fill_the_projected_box_silhouette(real_unity_solo):
    capture = next(c for c in solo.read_captures(real_unity_solo) if c.boxes.instance_ids)
    n = len(capture.boxes.instance_ids)
    intrinsic = convert.pixel_intrinsic(capture.matrix, capture.width, capture.height, capture.projection)
    area = visibility.silhouette_area(capture.boxes.values, np.broadcast_to(intrinsic, (n, 3, 3)),
                                      np.full(n, capture.width), np.full(n, capture.height))
    assert np.allclose(capture.boxes.visible_pixels / area, 1.0, atol=1e-3)  # Unity's own pixel counts


def test_mockup_fake_values_give_a_one_line_error(real_unity_mockup, capsys, tmp_path):
    with pytest.raises(OccprepError, match="several cameras need a unity config"):
        run_cli("create-infos", "--root-path", str(real_unity_mockup), "--out-dir", str(tmp_path), "--no-file-check")
    config = tmp_path / "mockup.json"
    config.write_text(json.dumps({"name": "mockup", "cameras": {"1": "CAM_FRONT",
                                                                "b4f6a75e-12de-4b4c-9574-5b135cecac6f": "CAM_BACK"}}))
    with pytest.raises(OccprepError, match=r"captures_00\d\.json captures\[0\].*not a unit quaternion"):
        run_cli("export-nuscenes", "--root-path", str(real_unity_mockup), "--out", str(tmp_path / "x"),
                "--unity-config", str(config))
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- generated datasets


@pytest.mark.parametrize("generation", ["solo", "solo-no-definitions", "0.0.1", "0.0.2"])
def test_every_generation_gives_the_true_boxes(tmp_path, generation):
    if generation.startswith("solo"):
        worlds = fake.write_solo(tmp_path, 3, 4, definitions=generation == "solo")
        assert detect_format(tmp_path) == "solo"
        unity = build_tables(solo.read_captures(tmp_path), unity_config())
    else:
        worlds = next(iter(fake.write_legacy(tmp_path, generation, 3, 4, captures_per_file=5).values()))
        assert detect_format(tmp_path) == "perception"
        assert (next(tmp_path.glob("Dataset*")) / "egos.json").is_file() == (generation == "0.0.1")
        unity = build_tables(perception.read_captures(tmp_path), unity_config())
    assert unity.summary["scenes"] == 3 and unity.summary["samples"] == 12
    assert assert_boxes_match_truth(unity.tables, worlds, 4) == {"1", "2", "3", "4"}  # fully visible → "4"


def test_silhouette_area_of_boxes_with_known_projections():
    width, height = 320.0, 240.0
    k = convert.pixel_intrinsic(fake.PROJECTION, width, height)

    def cube(x, y, z, side=1.0):
        return [x, y, z, side, side, side, 0.0, 0.0, 0.0, 1.0]

    values = np.array([cube(0, 0, 10), cube(0, 0, 0, side=4), cube(0, 0, -10)])  # ahead, around, behind the camera
    n = len(values)
    area = visibility.silhouette_area(values, np.broadcast_to(k, (n, 3, 3)), np.full(n, width), np.full(n, height))
    assert np.allclose(area, [k[0, 0] / 9.5 * k[1, 1] / 9.5, width * height, 0.0])  # front face at 9.5 m


def test_visibility_levels_from_pixels_or_from_the_image_border():
    width, height = 320.0, 240.0
    k = convert.pixel_intrinsic(fake.PROJECTION, width, height)
    centred = [0.0, 0.0, 10.0, 1, 1, 1, 0, 0, 0, 1]
    on_left_border = [-k[0, 2] / k[0, 0] * 10.0, 0.0, 10.0, 1, 1, 1, 0, 0, 0, 1]
    values = np.array([centred, centred, centred, on_left_border])
    n = len(values)
    args = (values, np.broadcast_to(k, (n, 3, 3)), np.full(n, width), np.full(n, height))
    area = visibility.silhouette_area(*args)
    pixels = np.array([round(area[0]), round(0.3 * area[0]), -1, -1])  # no metric: truncation only
    fraction = visibility.visible_fraction(*args, pixels)
    assert visibility.visibility_token(fraction).tolist() == ["4", "1", "4", "2"]
    assert 0.4 < fraction[3] < 0.6


def test_without_rendered_info_visibility_is_the_share_inside_the_image(tmp_path):
    worlds = fake.write_solo(tmp_path, 3, 2)
    for path in tmp_path.glob("sequence.*/*.json"):
        frame = json.loads(path.read_text())
        path.write_text(json.dumps({**frame, "metrics": []}))
    unity = build_tables(solo.read_captures(tmp_path), unity_config())
    assert unity.summary["boxes_without_visibility"] == unity.summary["boxes"] == 24
    expected = {}
    for world in worlds:
        for step in range(2):
            ids, _, t, r, s, _ = world.camera_boxes(step, 0.0)
            share = world.rendered_pixels(t, r, s) / world.rendered_pixels(t, r, s, margin=1)
            expected.update({(i, step): visibility.visibility_token(share).tolist()[k] for k, i in enumerate(ids)})
    step_of = {s.token: n % 2 for n, s in enumerate(unity.tables.sample)}
    centres = [{i: t[0] for w in worlds for i, t in truth_annotations(w, step).items()} for step in range(2)]
    tokens = {}
    for ann in unity.tables.sample_annotation:
        step = step_of[ann.sample_token]
        instance = next(i for i, c in centres[step].items() if np.allclose(c, ann.translation, atol=1e-6))
        tokens[instance, step] = ann.visibility_token
    assert tokens == expected and "4" in tokens.values() and set(tokens.values()) != {"4"}


def test_legacy_ego_is_the_real_ego_and_solo_ego_is_the_camera(tmp_path):
    world = fake.FakeWorld(seed=0)
    fake.write_legacy(tmp_path / "l", "0.0.1", 1, 2)
    legacy = build_tables(perception.read_captures(tmp_path / "l"), unity_config())
    p_ego, q_ego = world.ego(1)
    pose = legacy.tables.ego_pose[-1]
    assert np.allclose(pose.translation, convert.position_to_nuscenes(p_ego))
    camera = next(c for c in legacy.tables.calibrated_sensor if c.camera_intrinsic)
    assert np.allclose(camera.translation, [0.5, 0.0, 1.5])  # 0.5 m ahead, 1.5 m up, ego frame
    fake.write_solo(tmp_path / "s", 1, 2)
    ego_at_camera = build_tables(solo.read_captures(tmp_path / "s"), unity_config())
    camera = next(c for c in ego_at_camera.tables.calibrated_sensor if c.camera_intrinsic)
    assert camera.translation == [0.0, 0.0, 0.0]
    assert np.allclose(camera.rotation, convert.CAMERA_FROM_BODY_WXYZ)


def test_solo_without_timestamps_uses_the_sensor_step_time(tmp_path):
    fake.write_solo(tmp_path / "a", 1, 3)
    fake.write_solo(tmp_path / "b", 1, 3, timestamps=False)
    with_times = build_tables(solo.read_captures(tmp_path / "a"), unity_config()).tables.sample
    stepped = build_tables(solo.read_captures(tmp_path / "b"), unity_config()).tables.sample
    assert [s.timestamp for s in stepped] == [s.timestamp for s in with_times]
    assert np.diff([s.timestamp for s in stepped]).tolist() == [50_000, 50_000]
    fake.write_solo(tmp_path / "c", 1, 3, timestamps=False, definitions=False)
    with pytest.raises(OccprepError, match="no timestamp.*simulationDeltaTime"):
        list(solo.read_captures(tmp_path / "c"))


def test_legacy_runs_and_shuffled_files_are_deterministic(tmp_path):
    fake.write_legacy(tmp_path, "0.0.2", 2, 3, runs=2, captures_per_file=2, seed=4)
    first = build_tables(perception.read_captures(tmp_path), unity_config()).tables
    again = build_tables(perception.read_captures(tmp_path), unity_config()).tables
    assert len(first.scene) == 4 and len(first.log) == 2
    assert first == again
    times = [s.timestamp for s in first.sample]
    assert times == sorted(times)  # scenes apart on one time line, steps in order


def test_cameras_and_labels_map_through_the_config(tmp_path):
    cameras = (("cam_a", 0.0), ("cam_b", np.pi))
    fake.write_solo(tmp_path, 1, 2, cameras=cameras)
    with pytest.raises(OccprepError, match="several cameras need a unity config"):
        build_tables(solo.read_captures(tmp_path), unity_config())
    config = UnityConfig("t", cameras={"cam_a": "CAM_FRONT", "cam_b": "CAM_BACK"}, labels={"Car": "vehicle.car"})
    unity = build_tables(solo.read_captures(tmp_path), config)
    assert unity.camera_channels == ("CAM_FRONT", "CAM_BACK")
    assert {c.name for c in unity.tables.category} == {"vehicle.car", "Pedestrian", "Crate"}
    assert unity.summary["duplicate_boxes"] == 8  # both cameras store every box
    fake.write_solo(tmp_path / "front", 1, 2, cameras=cameras[:1])
    front_only = build_tables(solo.read_captures(tmp_path / "front"), config).tables.sample_annotation
    assert {a.token: a.visibility_token for a in unity.tables.sample_annotation} == \
        {a.token: a.visibility_token for a in front_only}  # the best camera decides; cam_b looks away


def test_non_perspective_projection_is_refused(tmp_path):
    fake.write_solo(tmp_path, 1, 1)
    path = tmp_path / "sequence.0" / "step0.frame_data.json"
    frame = json.loads(path.read_text())
    frame["captures"][0]["projection"] = "Orthographic"
    path.write_text(json.dumps(frame))
    with pytest.raises(OccprepError, match="step0.frame_data.json captures\\[0\\].*'Orthographic'"):
        build_tables(solo.read_captures(tmp_path), unity_config())


def test_export_loads_in_devkit_with_the_true_boxes_and_velocities(tmp_path):
    from nuscenes.nuscenes import NuScenes

    worlds = fake.write_legacy(tmp_path / "unity", "0.0.1", 2, 4)
    worlds = next(iter(worlds.values()))
    run_cli("export-nuscenes", "--root-path", str(tmp_path / "unity"), "--out", str(tmp_path / "out"),
            "--version", "v1.0-mini", "--quiet")
    assert_boxes_match_truth(read_tables(tmp_path / "out" / "v1.0-mini"), worlds, 4)
    nusc = NuScenes("v1.0-mini", str(tmp_path / "out"), verbose=False)
    truth = {i: t for world in worlds for i, t in truth_annotations(world, 1).items()}
    for scene in nusc.scene:
        sample = nusc.get("sample", nusc.get("sample", scene["first_sample_token"])["next"])
        for token in sample["anns"]:
            box = nusc.get_box(token)
            expected = next(t for t in truth.values() if np.allclose(t[0], box.center, atol=1e-6))
            assert np.allclose(nusc.box_velocity(token), expected[3], atol=1e-6)
    levels = {nusc.get("visibility", a["visibility_token"])["level"] for a in nusc.sample_annotation}
    assert levels == {"v0-40", "v40-60", "v60-80", "v80-100"}
    config = {"name": "unity-export", "lidar_channel": "LIDAR_TOP", "camera_channels": ["CAM_FRONT"],
              "detection_names": {c.name: c.name for c in read_tables(tmp_path / "out" / "v1.0-mini").category}}
    (tmp_path / "export.json").write_text(json.dumps(config))  # the export's one camera and its categories
    run_cli("check", "--root-path", str(tmp_path / "out"), "--canbus", str(tmp_path / "out"), "--no-blobs",
            "--config", str(tmp_path / "export.json"), "--quiet", "--report", str(tmp_path / "check.json"))
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["ready"] and report["counts"]["error"] == 0
    assert [f["status"] for f in report["findings"] if f["item"][-1] == "foreign keys"] == ["ok"]
    poses = json.loads((tmp_path / "out" / "can_bus" / "unity-0000_pose.json").read_text())
    assert list(poses[0]) == ["accel", "orientation", "pos", "rotation_rate", "utime", "vel"]
    assert np.allclose([p["vel"] for p in poses], [[8.0, 0.0, 0.0]] * 4)  # ego frame, 8 m/s forward


def test_create_infos_on_solo_matches_the_truth(tmp_path, monkeypatch):
    worlds = fake.write_solo(tmp_path / "solo", 2, 3, images=True)
    monkeypatch.chdir(tmp_path)
    run_cli("create-infos", "--root-path", "solo", "--out-dir", "infos", "--extra-tag", "unity", "--quiet")
    infos = load_pickle(tmp_path / "infos" / "unity_infos_temporal_train.pkl")["infos"]
    assert len(infos) == 6 and [i["frame_idx"] for i in infos] == [0, 1, 2, 0, 1, 2]
    middle = infos[1]
    assert list(middle["cams"]) == ["CAM_FRONT"] and middle["sweeps"] == []  # the virtual LIDAR_TOP has no sweeps
    truth = truth_annotations(worlds[0], 1)
    lidar_from_global = convert.conjugate_wxyz(middle["ego2global_rotation"])
    for box, velocity, valid in zip(middle["gt_boxes"], middle["gt_velocity"], middle["valid_flag"]):
        global_centre = convert.rotate_wxyz(middle["ego2global_rotation"], box[:3]) + middle["ego2global_translation"]
        expected = next(t for t in truth.values() if np.allclose(t[0], global_centre, atol=1e-6))
        assert np.allclose(velocity, convert.rotate_wxyz(lidar_from_global, expected[3])[:2], atol=1e-6)
        assert valid == (expected[4] > 0)
    assert not middle["valid_flag"].all()
    pitch = 0.1  # SOLO has no ego: the ego is the camera, pitched down, so forward speed shows up on z
    assert np.allclose(middle["can_bus"][13:16], [8.0 * np.cos(pitch), 0.0, 8.0 * np.sin(pitch)], atol=1e-6)


# ----------------------------------------------------------------------------- occprep check


def findings_of(root):
    from occprep.unity.validate import validate

    return [(f.item[1:], f.status, f.message) for f in validate(root) if f.status != "ok" and len(f.item) > 1]


def test_check_names_every_fake_value_of_the_mockup(real_unity_mockup, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("check", "--root-path", str(real_unity_mockup))
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "captures[0]: sensor_id 1 is not in sensors.json" in out
    assert "captures[0].annotations[1].values[0]: box rotation [0.0, 1.0, 2.0, 0.0] has length 2.236, not 1" in out
    assert "is not a perspective projection" in out and "Traceback" not in out
    assert "metrics[2]: capture_id '3d09bbce-7f7b-4d9c-8c8a-2f75158e0c8e' is not a capture of this run" in out


def test_check_of_the_real_solo_sample_finds_its_undefined_annotation_only(real_unity_solo):
    problems = findings_of(real_unity_solo)
    assert [(item, status) for item, status, _ in problems] == [
        (("sequence.1/step0.frame_data.json", "sequence"), "warn"),
        (("sequence.1/step0.frame_data.json", "captures[0].annotations[0]"), "warn")]
    assert "'PixelValueAnnotation' is not in annotation_definitions.json" in problems[1][2]


@pytest.mark.parametrize("generation", ["0.0.1", "0.0.2", "solo", "solo-no-definitions"])
def test_check_passes_generated_datasets(tmp_path, generation):
    if generation.startswith("solo"):
        fake.write_solo(tmp_path, 2, 3, definitions=generation == "solo")
    else:
        fake.write_legacy(tmp_path, generation, 2, 3)
    problems = findings_of(tmp_path)
    expected = [] if generation != "solo-no-definitions" else ["warn"] * 3  # the 3 missing definition files
    assert [status for _, status, _ in problems] == expected


def test_check_reports_mixed_versions_steps_and_quaternions(tmp_path):
    fake.write_legacy(tmp_path, "0.0.2", 1, 3, captures_per_file=1)
    run = next(tmp_path.glob("Dataset*"))
    first, second = sorted(run.glob("captures_*.json"))[:2]
    doc = json.loads(first.read_text())
    doc["version"] = "0.0.1"
    doc["captures"][0]["sensor"]["rotation"] = [0.0, 0.0, 0.0, 2.0]
    first.write_text(json.dumps(doc))
    other = json.loads(second.read_text())
    other["captures"][0]["step"] = doc["captures"][0]["step"]
    second.write_text(json.dumps(other))
    problems = findings_of(tmp_path)
    messages = " | ".join(m for _, _, m in problems)
    assert "the dataset mixes '0.0.1', '0.0.2'" in messages
    assert "sensor.rotation [0.0, 0.0, 0.0, 2.0] has length 2, not 1" in messages
    assert "also appears in" in messages
