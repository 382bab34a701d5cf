import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from occprep.config import occupancy_format
from occprep.errors import OccprepError
from occprep.occupancy import PathLocator
from occprep.occupancy.labels_npz import check_occ3d, occ3d_index
from occprep.occupancy.openocc_v1 import check as check_openocc_sample
from occprep.occupancy.openocc_v1 import read_index as read_openocc_index

REAL_TOKEN = "29796060110c4163b07f06eff4af0753"
OPENOCC = occupancy_format("openocc-v1")
OCC3D = occupancy_format("occ3d")


def write_openocc_sample(directory: Path, n: int = 5, seed: int = 0) -> dict:
    """Three valid sparse files; returns {info key: path}."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    occ = np.stack([rng.choice(640000, n, replace=False), rng.integers(0, 16, n)], axis=1).astype(np.int64)
    arrays = {
        "occ_gt_path": occ,
        "flow_gt_path": rng.normal(size=(n, 2)).astype(np.float32),
        "occ_invalid_path": rng.choice(640000, 7, replace=False).astype(np.int64),
    }
    names = {"occ_gt_path": "000_occ.npy", "flow_gt_path": "000_flow.npy", "occ_invalid_path": "000_occ_invalid.npy"}
    paths = {}
    for key, array in arrays.items():
        paths[key] = directory / names[key]
        np.save(paths[key], array)
    return paths


def test_openocc_index_keeps_published_paths_and_indexes_by_token(tmp_path):
    index_file = tmp_path / "occ_gt_train.json"
    entry = {"occ_gt_path": "./data/x/000_occ.npy", "flow_gt_path": "./data/x/000_flow.npy",
             "occ_invalid_path": "./data/x/000_occ_invalid.npy", "extra": 1}
    index_file.write_text(json.dumps({"scene-0001": {"a": entry}, "scene-0002": {"b": dict(entry, occ_gt_path="/abs.npy")}}))
    index = read_openocc_index(index_file)
    assert sorted(index.samples) == ["a", "b"]
    assert index.samples["b"].scene_name == "scene-0002"
    assert index.samples["b"].files == index.samples["b"].values == {
        "occ_gt_path": "/abs.npy", "flow_gt_path": "./data/x/000_flow.npy", "occ_invalid_path": "./data/x/000_occ_invalid.npy"}


def test_openocc_index_errors_name_file_and_position(tmp_path):
    bad = tmp_path / "occ_gt_val.json"
    bad.write_text('{"scene-0001": {"a": {"occ_gt_path": 3}}}')
    with pytest.raises(OccprepError, match=r"occ_gt_val.json: scene-0001 / a: Expected `str`, got `int` - at `\$.occ_gt_path`"):
        read_openocc_index(bad)
    bad.write_text('{"scene-0001": {"a": x}}')
    with pytest.raises(OccprepError, match=r"occ_gt_val.json: malformed JSON: .*byte"):
        read_openocc_index(bad)
    entry = {"occ_gt_path": "o", "flow_gt_path": "f", "occ_invalid_path": "i"}
    bad.write_text(json.dumps({"scene-0001": {"a": entry}, "scene-0002": {"a": entry}}))
    with pytest.raises(OccprepError, match="both scene-0001 and scene-0002"):
        read_openocc_index(bad)


def test_occ3d_tree_scan_on_real_release_layout(real_occ3d_frame):
    index = occ3d_index(str(real_occ3d_frame))
    sample = index.samples[REAL_TOKEN]
    assert sample.scene_name == "scene-1077"
    assert sample.values == {"occ_gt_path": f"gts/scene-1077/{REAL_TOKEN}/labels.npz",
                            "occ_path": os.path.join(str(real_occ3d_frame), "gts", "scene-1077", REAL_TOKEN)}
    assert check_occ3d({"labels": real_occ3d_frame / sample.values["occ_gt_path"]}, OCC3D) == []


def test_occ3d_tree_occ_path_keeps_the_root_as_typed(tmp_path, monkeypatch):
    (tmp_path / "data/nuscenes/gts/scene-0001/tok").mkdir(parents=True)
    (tmp_path / "data/nuscenes/gts/scene-0002/tok").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OccprepError, match="in both scene-0001/ and scene-0002/"):
        occ3d_index("./data/nuscenes")
    shutil.rmtree(tmp_path / "data/nuscenes/gts/scene-0002")
    index = occ3d_index("./data/nuscenes")
    assert index.samples["tok"].values["occ_path"] == "./data/nuscenes/gts/scene-0001/tok"
    with pytest.raises(OccprepError, match="no gts/ folder"):
        occ3d_index(str(tmp_path))


def test_locator_tries_cwd_then_occ_root_and_its_parents(tmp_path):
    occ_root = tmp_path / "elsewhere" / "data" / "occ_gt_release_v0_1"
    target = occ_root / "train" / "s" / "000_occ.npy"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"")
    cwd = tmp_path / "work"
    cwd.mkdir()
    locator = PathLocator(occ_root, cwd=cwd)
    assert locator.locate("./data/occ_gt_release_v0_1/train/s/000_occ.npy") == str(target)  # via a parent
    assert locator.locate("train/s/000_occ.npy") == str(target)  # via the root itself
    assert locator.locate(str(target)) == str(target)
    assert locator.locate("train/s/missing.npy") is None
    shadow = cwd / "train" / "s" / "000_occ.npy"
    shadow.parent.mkdir(parents=True)
    shadow.write_bytes(b"")
    assert locator.locate("train/s/000_occ.npy") == str(shadow)  # the cwd wins


def test_openocc_checks_accept_valid_and_name_each_problem(tmp_path):
    files = write_openocc_sample(tmp_path / "ok")
    assert check_openocc_sample(files, OPENOCC) == []

    bad = write_openocc_sample(tmp_path / "bad")
    np.save(bad["occ_gt_path"], np.array([[640000, 3], [5, 16]], dtype=np.int64))
    np.save(bad["flow_gt_path"], np.zeros((3, 2), dtype=np.float32))
    np.save(bad["occ_invalid_path"], np.array([-1, 2], dtype=np.int64))
    problems = check_openocc_sample(bad, OPENOCC)
    assert len(problems) == 4
    assert any("voxel index out of range" in p and p.startswith(str(bad["occ_gt_path"])) for p in problems)
    assert any("class out of range 0-15" in p for p in problems)
    assert any("3 flow rows for 2 occupied voxels" in p for p in problems)
    assert any(p.startswith(str(bad["occ_invalid_path"])) and "min -1" in p for p in problems)

    np.save(bad["occ_gt_path"], np.zeros((4, 3), dtype=np.int64))
    np.save(bad["flow_gt_path"], np.zeros((4, 2), dtype=np.int64))
    np.save(bad["occ_invalid_path"], np.zeros((2, 2), dtype=np.int64))
    problems = check_openocc_sample(bad, OPENOCC)
    assert [p.split(": ", 1)[1].split(", got")[0] for p in problems] == [
        "occupancy must be an integer (N,2) array", "flow must be a float (N,2) array",
        "invalid voxels must be a 1-D integer array"]

    bad["flow_gt_path"].write_bytes(b"\x93NUMPY garbage")
    problems = check_openocc_sample(bad, OPENOCC)
    assert any(p.startswith(f"{bad['flow_gt_path']}: not a readable .npy") for p in problems)


def save_labels(path: Path, **overrides) -> Path:
    arrays = {name: np.zeros((200, 200, 16), dtype=np.uint8) for name in ("semantics", "mask_lidar", "mask_camera")}
    arrays["semantics"][0, 0, 0] = 17
    arrays["mask_camera"][1, 2, 3] = 1
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.parametrize("overrides, message", [
    ({}, None),
    ({"semantics": np.full((200, 200, 16), 18, np.uint8)}, "semantics has value 18 (allowed 0-17)"),
    ({"mask_lidar": np.full((200, 200, 16), 2, np.uint8)}, "mask_lidar has value 2 (allowed 0-1)"),
    ({"mask_camera": np.zeros((200, 200, 8), np.uint8)}, "mask_camera must be uint8 (200, 200, 16), got uint8 (200, 200, 8)"),
    ({"semantics": np.zeros((200, 200, 16), np.int64)}, "semantics must be uint8 (200, 200, 16), got int64 (200, 200, 16)"),
    ({"mask_lidar": None}, "missing array(s) mask_lidar"),
])
def test_occ3d_checks(tmp_path, overrides, message):
    path = save_labels(tmp_path / "labels.npz", **overrides)
    problems = check_occ3d({"labels": path}, OCC3D)
    assert problems == ([] if message is None else [f"{path}: {message}"])


def test_occ3d_corrupt_archive(tmp_path):
    path = tmp_path / "labels.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    [problem] = check_occ3d({"labels": path}, OCC3D)
    assert problem.startswith(f"{path}: not a readable .npz")
