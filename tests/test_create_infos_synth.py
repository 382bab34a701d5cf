"""create-infos on generated nuScenes-format data (occprep.synth), checked against nuscenes-devkit."""

import json
import os
import sys

import numpy as np
import pytest

import devkit_oracle as oracle
from occprep.cli import main
from occprep.config import dataset_config
from occprep.create import CreateOptions, build_infos
from occprep.pickles import load_pickle
from occprep.records import CanBus
from occprep.splits import plan_from_file
from occprep.synth import synthesize
from occprep.tables import read_tables
from occprep.targets import BuildOptions, targets
from helpers import digest, run_cli

NO_CAN_BUS = "scene-0553"


def bevformer_infos(result, max_sweeps=None):
    """Split -> the BEVFormer infos of an in-memory `build_infos` result."""
    built = result.build(targets()["bevformer"], BuildOptions(max_sweeps=max_sweeps))
    return {split: data["infos"] for split, data in built.items()}


def isolate_annotations(version_dir):
    """Give the synthetic tables tracks whose velocity the devkit cannot estimate (NaN): cut one
    annotation out of its track (single-annotation instance)."""
    records = json.loads((version_dir / "sample_annotation.json").read_text())
    by_token = {r["token"]: r for r in records}
    middle = next(r for r in records if r["prev"] and r["next"])
    by_token[middle["prev"]]["next"] = ""
    by_token[middle["next"]]["prev"] = ""
    middle["prev"] = middle["next"] = ""
    (version_dir / "sample_annotation.json").write_text(json.dumps(records))
    return middle["token"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """3 mini scenes (2 train, 1 val), 8 keyframes each, empty blob files, one scene without CAN bus."""
    base = tmp_path_factory.mktemp("synth")
    synthesize(base, "v1.0-mini", scenes=3, samples_per_scene=8, occ=(), blobs="empty",
               without_can_bus=[NO_CAN_BUS])
    isolated = isolate_annotations(base / "nuscenes" / "v1.0-mini")
    return base, isolated


@pytest.fixture(scope="module")
def nusc(dataset):
    from nuscenes import NuScenes

    return NuScenes(version="v1.0-mini", dataroot=str(dataset[0] / "nuscenes"), verbose=False)


@pytest.fixture(scope="module")
def created(dataset):
    base = dataset[0]
    argv = sys.argv
    sys.argv = ["occprep", "create-infos", "--root-path", str(base / "nuscenes"), "--canbus", str(base),
                "--version", "v1.0-mini", "--out-dir", str(base / "out"), "--quiet", "--report", str(base / "r.json")]
    try:
        main()
    finally:
        sys.argv = argv
    split = {name: load_pickle(base / "out" / f"nuscenes_infos_temporal_{name}.pkl") for name in ("train", "val")}
    return split, json.loads((base / "r.json").read_text())["versions"][0]


def test_infos_match_the_devkit(dataset, created, nusc):
    split, _ = created
    infos = split["train"]["infos"] + split["val"]["infos"]
    assert sorted(i["token"] for i in infos) == sorted(s["token"] for s in nusc.sample)
    oracle.assert_infos_match(nusc, infos, str(dataset[0] / "nuscenes"), max_sweeps=10)


def test_velocity_nan_is_kept(dataset, created, nusc):
    isolated = dataset[1]
    annotation = nusc.get("sample_annotation", isolated)
    info = next(i for s in created[0].values() for i in s["infos"] if i["token"] == annotation["sample_token"])
    row = nusc.get("sample", info["token"])["anns"].index(isolated)
    assert np.isnan(info["gt_velocity"][row]).all() and np.isnan(nusc.box_velocity(isolated)).all()
    assert np.isfinite(np.delete(info["gt_velocity"], row, axis=0)).all()


def test_official_split_rule_and_summary(created, nusc):
    split, report = created
    from nuscenes.utils.splits import create_splits_scenes

    lists = create_splits_scenes()
    scene_of = {s["token"]: s["name"] for s in nusc.scene}
    assert {scene_of[i["scene_token"]] for i in split["train"]["infos"]} <= set(lists["mini_train"])
    assert {scene_of[i["scene_token"]] for i in split["val"]["infos"]} <= set(lists["mini_val"])
    assert report["samples"] == {"train": len(split["train"]["infos"]), "val": len(split["val"]["infos"])}
    assert report["samples"]["train"] + report["samples"]["val"] == 24
    assert report["scenes_without_can_bus"] == {NO_CAN_BUS: f"no file can_bus/{NO_CAN_BUS}_pose.json"}
    assert report["scenes_left_out"] == {} and report["scenes_in_no_list"] == []


def test_can_bus_slots_and_frame_idx(dataset, created, nusc):
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus

    can_bus = NuScenesCanBus(dataroot=str(dataset[0]))
    for info in created[0]["train"]["infos"] + created[0]["val"]["infos"]:
        if info["scene_name"] == NO_CAN_BUS:
            np.testing.assert_array_equal(info["can_bus"], np.zeros(18))
        else:
            messages = can_bus.get_messages(info["scene_name"], "pose")
            np.testing.assert_array_equal(info["can_bus"], oracle.can_bus_slots(messages, info["timestamp"]))
    frames = [i["frame_idx"] for i in created[0]["train"]["infos"]]
    assert frames == list(range(8)) * 2


def test_in_memory_api_with_custom_splits_and_sweeps(dataset, nusc, tmp_path):
    """The stages on in-memory tables and CAN bus (as a non-nuScenes source would call them)."""
    base = dataset[0]
    tables = read_tables(base / "nuscenes" / "v1.0-mini")
    (tmp_path / "s.json").write_text(json.dumps({"a": ["scene-0103"], "b": ["scene-0061"]}))
    result = build_infos(tables, CanBus(poses={}, missing={}), dataset_config(), "rel/root", plan_from_file(tmp_path / "s.json"),
                         "v1.0-mini", CreateOptions(max_sweeps=3, file_check=False))
    assert list(result.splits) == ["a", "b"]
    assert result.left_out == {NO_CAN_BUS: f"in no split of {tmp_path / 's.json'}"}
    assert set(result.no_can_bus) == {"scene-0103", "scene-0061"}
    splits = bevformer_infos(result, max_sweeps=3)
    assert all(info["scene_name"] == "scene-0103" for info in splits["a"])
    infos = splits["a"] + splits["b"]
    assert [len(i["sweeps"]) for i in splits["b"]] == [0, 3, 3, 3, 3, 3, 3, 3]
    assert all(i["lidar_path"].startswith("rel/root/samples/LIDAR_TOP/") for i in infos)
    assert all(not i["can_bus"].any() for i in infos)
    cwd = os.getcwd()
    os.chdir(base)  # the devkit's paths use its dataroot; compare everything but the path prefix
    try:
        for info in infos:
            info["lidar_path"] = info["lidar_path"].replace("rel/root", str(base / "nuscenes"), 1)
            for sensor in [*info["sweeps"], *info["cams"].values()]:
                sensor["data_path"] = sensor["data_path"].replace("rel/root", str(base / "nuscenes"), 1)
        oracle.assert_infos_match(nusc, infos, str(base / "nuscenes"), max_sweeps=3)
    finally:
        os.chdir(cwd)


def test_file_check_leaves_out_only_the_scene_with_a_missing_file(dataset, created, monkeypatch, capsys, tmp_path):
    base = dataset[0]
    info = created[0]["train"]["infos"][3]
    missing = info["cams"]["CAM_BACK"]["data_path"]
    os.rename(missing, missing + ".away")
    try:
        code, _, err = run_cli(["create-infos", "--root-path", base / "nuscenes", "--canbus", base, "--version",
                                "v1.0-mini", "--out-dir", tmp_path, "--report", tmp_path / "r.json"], monkeypatch, capsys)
    finally:
        os.rename(missing + ".away", missing)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())["versions"][0]
    assert list(report["scenes_left_out"]) == [info["scene_name"]]
    assert os.path.relpath(missing, base / "nuscenes") in report["scenes_left_out"][info["scene_name"]]
    assert report["samples"] == {"train": 8, "val": 8}


def test_samples_without_annotations_give_empty_typed_arrays(dataset, tmp_path):
    tables = read_tables(dataset[0] / "nuscenes" / "v1.0-mini")
    scene_of_sample = {s.token: s.scene_token for s in tables.sample}
    emptied = tables.scene[0].token
    tables.sample_annotation = [a for a in tables.sample_annotation if scene_of_sample[a.sample_token] != emptied]
    result = build_infos(tables, CanBus(poses={}, missing={}), dataset_config(), "root",
                         plan_from_file_dict(tmp_path, {"all": [s.name for s in tables.scene]}), "v1.0-mini",
                         CreateOptions(file_check=False))
    everything = bevformer_infos(result)["all"]
    infos = [i for i in everything if i["scene_token"] == emptied]
    assert len(infos) == 8
    for info in infos:
        assert info["gt_boxes"].shape == (0, 7) and info["gt_boxes"].dtype == np.float64
        assert info["gt_velocity"].shape == (0, 2) and info["gt_velocity"].dtype == np.float64
        assert info["gt_names"].shape == (0,) and info["gt_names"].dtype.kind == "U"
        assert info["num_lidar_pts"].shape == info["num_radar_pts"].shape == (0,)
        assert info["num_lidar_pts"].dtype == np.int64 and info["valid_flag"].dtype == bool
    assert all(len(i["gt_boxes"]) for i in everything if i["scene_token"] != emptied)


def plan_from_file_dict(folder, lists):
    path = folder / "splits-all.json"
    path.write_text(json.dumps(lists))
    return plan_from_file(path)


def test_split_decode_of_big_tables_gives_the_same_pickles(dataset, created, tmp_path, monkeypatch, capsys):
    """Big sample_data/ego_pose files are decoded in filtered batches; the output must not change."""
    import occprep.tables

    monkeypatch.setattr(occprep.tables, "SPLIT_DECODE_BYTES", 0)
    monkeypatch.setattr(occprep.tables, "DECODE_BATCH", 7)
    monkeypatch.setattr(occprep.tables, "DECODE_BYTES", 5000)
    base = dataset[0]
    code, _, err = run_cli(["create-infos", "--root-path", base / "nuscenes", "--canbus", base, "--version",
                            "v1.0-mini", "--out-dir", tmp_path, "--quiet"], monkeypatch, capsys)
    assert code == 0, err
    for split in ("train", "val"):
        name = f"nuscenes_infos_temporal_{split}.pkl"
        assert digest(tmp_path / name) == digest(base / "out" / name)
