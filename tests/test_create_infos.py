"""create-infos on the real shared mini scene (scene-0916), checked against nuscenes-devkit."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import devkit_oracle as oracle
from occprep.cli import main
from occprep.pickles import load_pickle
from helpers import run_cli
from test_pickles import pickle_globals

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SCENE = SHARED / "nuscenes-mini-scene-0916"
VENV2_PYTHON = Path("/work/venv2/bin/python")

pytestmark = pytest.mark.skipif(not SCENE.is_dir(), reason=f"shared data not found at {SCENE}")


def lay_out(base: Path) -> Path:
    """`base/data/nuscenes` and `base/data/can_bus` symlinks to the shared scene, as the seed documents."""
    (base / "data").mkdir(parents=True)
    (base / "data" / "nuscenes").symlink_to(SCENE)
    (base / "data" / "can_bus").symlink_to(SCENE / "can_bus")
    return base


@pytest.fixture(scope="module")
def created(tmp_path_factory):
    """One default run in a laid-out working directory: (workdir, val pickle bytes, val infos)."""
    base = lay_out(tmp_path_factory.mktemp("scene0916"))
    cwd, argv = os.getcwd(), sys.argv
    os.chdir(base)
    try:
        sys.argv = ["occprep", "create-infos", "--version", "v1.0-mini", "--no-file-check", "--quiet",
                    "--report", "report.json"]
        main()
    finally:
        os.chdir(cwd)
        sys.argv = argv
    val = base / "data" / "nuscenes" / "nuscenes_infos_temporal_val.pkl"
    return base, val.read_bytes(), load_pickle(val)


@pytest.fixture(scope="module")
def nusc(created):
    """The devkit on the same layout, with the root as typed on the command line."""
    from nuscenes import NuScenes

    cwd = os.getcwd()
    os.chdir(created[0])
    try:
        return NuScenes(version="v1.0-mini", dataroot="./data/nuscenes", verbose=False)
    finally:
        os.chdir(cwd)


def test_outputs_summary_and_top_level(created):
    base, _, data = created
    assert sorted(data) == ["infos", "metadata"] and data["metadata"] == {"version": "v1.0-mini"}
    assert len(data["infos"]) == 41
    train = load_pickle(base / "data" / "nuscenes" / "nuscenes_infos_temporal_train.pkl")
    assert train == {"infos": [], "metadata": {"version": "v1.0-mini"}}
    report = json.loads((base / "report.json").read_text())
    assert report["versions"][0]["samples"] == {"train": 0, "val": 41}
    assert report["versions"][0]["scenes_without_can_bus"] == {}


def test_infos_match_the_devkit(created, nusc):
    infos = created[2]["infos"]
    assert [i["token"] for i in infos] == [s["token"] for s in nusc.sample]  # sample-table order
    oracle.assert_infos_match(nusc, infos, "./data/nuscenes", max_sweeps=10)


def test_sweeps_never_cross_the_scene_start(created):
    infos = created[2]["infos"]
    assert infos[0]["frame_idx"] == 0 and infos[0]["sweeps"] == []
    assert [len(i["sweeps"]) for i in infos[1:]] == [10] * 40
    first_time = infos[0]["timestamp"]
    assert all(s["timestamp"] >= first_time for i in infos for s in i["sweeps"])
    # earlier keyframes count as sweeps: the previous keyframe's lidar appears in the next info's sweeps
    lidar_token = {i["token"]: i["lidar_path"] for i in infos}
    assert any(s["data_path"] == lidar_token[infos[5]["prev"]] for s in infos[5]["sweeps"])


@pytest.mark.parametrize("mode", ["reference", "nearest-before"])
def test_can_bus_slots_follow_the_devkit_messages(tmp_path, monkeypatch, capsys, nusc, mode):
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus

    base = lay_out(tmp_path)
    monkeypatch.chdir(base)
    code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--no-file-check", "--quiet", "--out-dir",
                            "out", "--can-bus-mode", mode], monkeypatch, capsys)
    assert code == 0, err
    infos = load_pickle(base / "out" / "nuscenes_infos_temporal_val.pkl")["infos"]
    messages = NuScenesCanBus(dataroot="./data").get_messages("scene-0916", "pose")
    for info in infos:
        expected = oracle.can_bus_slots(messages, info["timestamp"], mode)
        assert info["can_bus"].dtype == np.float64 and info["can_bus"].shape == (18,)
        np.testing.assert_array_equal(info["can_bus"], expected)
    if mode == "reference":  # the quirk is visible: slots 7-15 differ from the before-rule somewhere
        assert any(not np.array_equal(i["can_bus"], oracle.can_bus_slots(messages, i["timestamp"], "nearest-before"))
                   for i in infos)


def test_same_input_gives_identical_bytes_and_portable_pickles(created, tmp_path, monkeypatch, capsys):
    base, first, _ = created
    monkeypatch.chdir(base)
    code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--no-file-check", "--quiet",
                            "--out-dir", tmp_path], monkeypatch, capsys)
    assert code == 0, err
    assert (tmp_path / "nuscenes_infos_temporal_val.pkl").read_bytes() == first
    assert first[1] <= 4
    assert pickle_globals(first) == {("numpy", "ndarray"), ("numpy", "dtype")}


@pytest.mark.skipif(not VENV2_PYTHON.exists(), reason="no numpy 2 environment at /work/venv2")
def test_pickle_loads_under_numpy2(created):
    base = created[0]
    script = ("import pickle, sys, numpy; d = pickle.load(open(sys.argv[1], 'rb')); "
              "print(numpy.__version__.split('.')[0], len(d['infos']), d['infos'][3]['gt_boxes'].shape[1])")
    out = subprocess.run([str(VENV2_PYTHON), "-c", script, str(base / "data/nuscenes/nuscenes_infos_temporal_val.pkl")],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["2", "41", "7"]


def test_absolute_root_inside_cwd_shortens_data_path_only(tmp_path, monkeypatch, capsys):
    base = lay_out(tmp_path)
    monkeypatch.chdir(base)
    root = str(base / "data" / "nuscenes")
    code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--no-file-check", "--quiet", "--root-path",
                            root, "--out-dir", "out"], monkeypatch, capsys)
    assert code == 0, err
    info = load_pickle(base / "out" / "nuscenes_infos_temporal_val.pkl")["infos"][1]
    assert info["lidar_path"].startswith(root + "/samples/LIDAR_TOP/")
    assert info["cams"]["CAM_FRONT"]["data_path"].startswith("data/nuscenes/samples/CAM_FRONT/")
    assert info["sweeps"][0]["data_path"].startswith("data/nuscenes/sweeps/LIDAR_TOP/")


def copy_scene(base: Path) -> Path:
    """A writable copy of the shared scene's tables and CAN bus under base/data (no blobs)."""
    root = base / "data" / "nuscenes"
    shutil.copytree(SCENE / "v1.0-mini", root / "v1.0-mini")
    shutil.copytree(SCENE / "can_bus", base / "data" / "can_bus")
    return root


def keyframe_files(root: Path) -> list:
    sample_data = json.loads((root / "v1.0-mini" / "sample_data.json").read_text())
    channels = {"LIDAR_TOP", *oracle.CAMERAS}
    return [r["filename"] for r in sample_data if r["is_key_frame"] and r["filename"].split("/")[1] in channels]


def test_file_check_leaves_out_scenes_with_missing_keyframe_files(tmp_path, monkeypatch, capsys):
    root = copy_scene(tmp_path)
    files = keyframe_files(root)
    assert len(files) == 41 * 7
    for name in files[1:]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()
    monkeypatch.chdir(tmp_path)
    args = ["create-infos", "--version", "v1.0-mini", "--out-dir", "out", "--report", "r.json"]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert "scene-0916: 1 keyframe file(s) missing" in err and files[0] in err
    report = json.loads((tmp_path / "r.json").read_text())["versions"][0]
    assert report["samples"] == {"train": 0, "val": 0} and list(report["scenes_left_out"]) == ["scene-0916"]

    code, _, err = run_cli(args + ["--strict", "--out-dir", "strict"], monkeypatch, capsys)
    assert code == 2 and err.splitlines()[-1].startswith("error: scene scene-0916: 1 keyframe file(s) missing")
    assert not (tmp_path / "strict").exists()

    (root / files[0]).touch()
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["versions"][0]["samples"]["val"] == 41


def test_scenes_without_can_bus_get_zeros_and_are_named(tmp_path, monkeypatch, capsys):
    root = copy_scene(tmp_path)
    (tmp_path / "data" / "can_bus" / "scene-0916_pose.json").write_text('[{"utime": 1, ')
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--no-file-check", "--out-dir", "out"],
                           monkeypatch, capsys)
    assert code == 0, err
    assert "scene-0916: unreadable:" in err and "scene-0916_pose.json: malformed JSON" in err
    infos = load_pickle(root.parent.parent / "out" / "nuscenes_infos_temporal_val.pkl")["infos"]
    assert all(not i["can_bus"].any() for i in infos)
    (tmp_path / "data" / "can_bus" / "scene-0916_pose.json").unlink()
    code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--no-file-check", "--out-dir", "out"],
                           monkeypatch, capsys)
    assert code == 0 and "scene-0916: no file can_bus/scene-0916_pose.json" in err


def test_custom_splits_file(tmp_path, monkeypatch, capsys):
    lay_out(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "splits.json").write_text(json.dumps({"mine": ["scene-0916"], "other": []}))
    code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--no-file-check", "--quiet", "--out-dir", "out",
                            "--splits", "splits.json", "--extra-tag", "x"], monkeypatch, capsys)
    assert code == 0, err
    assert len(load_pickle(tmp_path / "out" / "x_infos_temporal_mine.pkl")["infos"]) == 41
    assert load_pickle(tmp_path / "out" / "x_infos_temporal_other.pkl")["infos"] == []
