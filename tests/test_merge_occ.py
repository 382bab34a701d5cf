import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import digest, run_cli
from occprep.pickles import dump_pickle, load_pickle

REAL_TOKEN = "29796060110c4163b07f06eff4af0753"

# scene -> (split, number of keyframes); scene-0003 has ground truth but no infos
SCENES = {"scene-0001": ("train", 3), "scene-0002": ("val", 2), "scene-0003": ("train", 2)}
INFO_SCENES = ("scene-0001", "scene-0002")


def token(scene: str, frame: int) -> str:
    return f"{scene[-4:]}{frame:028x}"


def make_info(scene: str, frame: int, count: int) -> dict:
    return {
        "lidar_path": f"./data/nuscenes/samples/LIDAR_TOP/{scene}_{frame}.pcd.bin",
        "token": token(scene, frame),
        "prev": token(scene, frame - 1) if frame else "",
        "next": token(scene, frame + 1) if frame + 1 < count else "",
        "can_bus": np.arange(18, dtype=np.float64),
        "frame_idx": frame,
        "sweeps": [],
        "scene_token": f"st-{scene}",
        "scene_name": scene,
        "timestamp": 1_000_000 + frame,
        "gt_boxes": np.zeros((0, 7)),
    }


def write_infos(infos_dir: Path, version: str = "v1.0-mini", drop_scene_name: bool = False) -> None:
    for split in ("train", "val"):
        infos = [make_info(scene, f, n) for scene in INFO_SCENES for s, n in [SCENES[scene]] if s == split
                 for f in range(n)]
        if drop_scene_name:
            for info in infos:
                del info["scene_name"]
        dump_pickle({"infos": infos, "metadata": {"version": version}}, infos_dir / f"nuscenes_infos_temporal_{split}.pkl")


def sparse_arrays(seed: int):
    rng = np.random.default_rng(seed)
    n = 4
    occ = np.stack([rng.choice(640000, n, replace=False), rng.integers(0, 16, n)], axis=1).astype(np.int64)
    return occ, rng.normal(size=(n, 2)).astype(np.float32), rng.choice(640000, 3, replace=False).astype(np.int64)


@pytest.fixture
def openocc(tmp_path, monkeypatch):
    """cwd with data/nuscenes infos and an OpenOcc v1 release whose JSON paths are cwd-relative."""
    monkeypatch.chdir(tmp_path)
    write_infos(tmp_path / "data" / "nuscenes")
    root = tmp_path / "data" / "occ_gt_release_v1_0"
    indexes = {"train": {}, "val": {}}
    for scene, (split, count) in SCENES.items():
        entries = indexes[split].setdefault(scene, {})
        for frame in range(count):
            rel = f"./data/occ_gt_release_v1_0/{split}/{scene}/{frame:03d}"
            paths = {"occ_gt_path": f"{rel}_occ.npy", "flow_gt_path": f"{rel}_flow.npy",
                     "occ_invalid_path": f"{rel}_occ_invalid.npy"}
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            for path, array in zip(paths.values(), sparse_arrays(frame)):
                np.save(tmp_path / path, array)
            entries[token(scene, frame)] = paths
    for split, index in indexes.items():
        (root / f"occ_gt_{split}.json").write_text(json.dumps(index))
    return root


def save_labels(path: Path, semantics_value: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.zeros((200, 200, 16), np.uint8)
    semantics = np.full_like(grid, 17)
    semantics[:10] = semantics_value
    np.savez_compressed(path, semantics=semantics, mask_lidar=grid, mask_camera=grid + 1)


@pytest.fixture
def occ3d(tmp_path, monkeypatch):
    """cwd with data/nuscenes infos and an Occ3D gts/ tree in data/nuscenes."""
    monkeypatch.chdir(tmp_path)
    write_infos(tmp_path / "data" / "nuscenes")
    for scene, (_, count) in SCENES.items():
        for frame in range(count):
            save_labels(tmp_path / "data" / "nuscenes" / "gts" / scene / token(scene, frame) / "labels.npz")
    return tmp_path / "data" / "nuscenes"


def run(capsys, monkeypatch, *args):
    """Run the CLI as a user would; returns (exit code, stderr)."""
    code, _, err = run_cli(args, monkeypatch, capsys)
    return code, err


OPENOCC_ARGS = ("merge-occ", "--infos-dir", "data/nuscenes", "--occ-root", "data/occ_gt_release_v1_0")
OCC3D_ARGS = ("merge-occ", "--format", "occ3d", "--infos-dir", "data/nuscenes", "--occ-root", "./data/nuscenes")


def test_openocc_merge_appends_published_paths_and_reports_coverage(openocc, capsys, monkeypatch, tmp_path):
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS, "--verify", "--report", "report.json")
    assert code == 0, err
    out = openocc / "nuscenes_infos_temporal_train_occ_gt.pkl"
    merged = load_pickle(out)
    source = load_pickle(tmp_path / "data/nuscenes/nuscenes_infos_temporal_train.pkl")
    assert merged["metadata"] == {"version": "v1.0-mini"}
    index = json.loads((openocc / "occ_gt_train.json").read_text())
    assert len(merged["infos"]) == 3
    for before, after in zip(source["infos"], merged["infos"]):
        assert list(after) == list(before) + ["occ_gt_path", "flow_gt_path", "occ_invalid_path"]
        assert {k: after[k] for k in ("occ_gt_path", "flow_gt_path", "occ_invalid_path")} == \
            index[before["scene_name"]][before["token"]]
        np.testing.assert_array_equal(after["can_bus"], before["can_bus"])

    report = json.loads(Path("report.json").read_text())
    assert report["written"] is True
    assert report["splits"]["train"]["with_gt"] == 3 and report["splits"]["val"]["with_gt"] == 2
    assert report["splits"]["val"]["scenes"] == {"scene-0002": {"infos": 2, "with_gt": 2, "without_gt": 0}}
    assert report["gt_without_info"] == {str(Path("data/occ_gt_release_v1_0/occ_gt_train.json")):
                                         {"samples": 2, "scenes": {"scene-0003": 2}},
                                         str(Path("data/occ_gt_release_v1_0/occ_gt_val.json")):
                                         {"samples": 0, "scenes": {}}}
    assert report["verify"] == {"samples": 5, "problems": []}
    assert "train: 3/3 infos with ground truth" in err and "ground truth with no info: 2 samples in 1 scenes" in err

    first = digest(out)
    out.unlink()
    assert run(capsys, monkeypatch, *OPENOCC_ARGS, "--quiet")[0] == 0
    assert digest(out) == first  # deterministic


def test_infos_without_scene_name_merge_by_token(openocc, capsys, monkeypatch, tmp_path):
    write_infos(tmp_path / "data" / "nuscenes", version="v1.0-trainval", drop_scene_name=True)
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS, "--splits", "val", "--out-dir", "out")
    assert code == 0, err
    merged = load_pickle(tmp_path / "out/nuscenes_infos_temporal_val_occ_gt.pkl")
    assert merged["metadata"]["version"] == "v1.0-trainval"
    assert [info["scene_name"] for info in merged["infos"]] == ["scene-0002", "scene-0002"]
    assert merged["infos"][1]["occ_gt_path"] == "./data/occ_gt_release_v1_0/val/scene-0002/001_occ.npy"
    assert not (openocc / "nuscenes_infos_temporal_train_occ_gt.pkl").exists()


def remove_gt_entry(root: Path, scene: str, frame: int) -> None:
    path = root / "occ_gt_train.json"
    index = json.loads(path.read_text())
    del index[scene][token(scene, frame)]
    path.write_text(json.dumps(index))


def test_missing_ground_truth_fails_listing_tokens_and_keeps_older_output(openocc, capsys, monkeypatch):
    older = openocc / "nuscenes_infos_temporal_train_occ_gt.pkl"
    older.write_bytes(b"older output")
    remove_gt_entry(openocc, "scene-0001", 1)
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS, "--report", "r.json")
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: nuscenes_infos_temporal_train.pkl: 1 of 3 infos have no entry in ")
    assert token("scene-0001", 1) in last and "--allow-missing" in last and "nothing written" in last
    assert older.read_bytes() == b"older output"
    assert not (openocc / "nuscenes_infos_temporal_val_occ_gt.pkl").exists()
    report = json.loads(Path("r.json").read_text())
    assert report["written"] is False
    assert report["splits"]["train"]["missing_gt_tokens"] == [token("scene-0001", 1)]
    assert report["splits"]["train"]["scenes"]["scene-0001"] == {"infos": 3, "with_gt": 2, "without_gt": 1}


def test_allow_missing_writes_the_infos_with_ground_truth(openocc, capsys, monkeypatch):
    remove_gt_entry(openocc, "scene-0001", 1)
    (openocc / "train/scene-0001/002_flow.npy").unlink()
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS, "--allow-missing", "--report", "r.json")
    assert code == 0, err
    merged = load_pickle(openocc / "nuscenes_infos_temporal_train_occ_gt.pkl")
    assert [info["token"] for info in merged["infos"]] == [token("scene-0001", 0)]
    report = json.loads(Path("r.json").read_text())["splits"]["train"]
    assert report["missing_gt_tokens"] == [token("scene-0001", 1)]
    assert report["missing_files"] == [f"{token('scene-0001', 2)}: ./data/occ_gt_release_v1_0/train/scene-0001/002_flow.npy"]
    assert "train: 1/3 infos with ground truth, 2 without (1 not in the release, 1 files missing; scene-0001: 2)" in err


def test_missing_files_fail_by_default_and_say_where_they_were_looked_for(openocc, capsys, monkeypatch):
    (openocc / "val/scene-0002/001_occ_invalid.npy").unlink()
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS)
    assert code == 2
    assert "ground truth files of 1 infos not found" in err and "001_occ_invalid.npy" in err
    assert "(cwd), then" in err
    assert not list(openocc.glob("*.pkl"))


@pytest.mark.parametrize("damage, message", [
    (lambda d: np.save(d / "000_occ.npy", np.zeros((4, 3), np.int64)), "occupancy must be an integer (N,2) array"),
    (lambda d: np.save(d / "001_flow.npy", np.zeros((9, 2), np.float32)), "9 flow rows for 4 occupied voxels"),
    (lambda d: (d / "002_occ_invalid.npy").write_bytes(b"corrupt"), "not a readable .npy"),
    (lambda d: np.save(d / "000_occ.npy", np.array([[1, 16], [2, 0], [3, 0], [4, 0]])), "class out of range 0-15"),
])
def test_verify_fails_on_bad_ground_truth_and_writes_nothing(openocc, capsys, monkeypatch, damage, message):
    damage(openocc / "train" / "scene-0001")
    assert run(capsys, monkeypatch, *OPENOCC_ARGS)[0] == 0  # without --verify files are only checked to exist
    for pkl in openocc.glob("*.pkl"):
        pkl.unlink()
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS, "--verify", "--workers", "2")
    assert code == 2
    assert "error: 1 problems in ground truth files: " in err and message in err and "nothing written" in err
    assert not list(openocc.glob("*.pkl"))


def test_path_styles_relative_and_absolute(openocc, capsys, monkeypatch, tmp_path):
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS, "--splits", "val", "--path-style", "relative",
                    "--path-root", "data")
    assert code == 0, err
    info = load_pickle(openocc / "nuscenes_infos_temporal_val_occ_gt.pkl")["infos"][0]
    assert info["occ_gt_path"] == os.path.join("occ_gt_release_v1_0", "val", "scene-0002", "000_occ.npy")
    assert (tmp_path / "data" / info["flow_gt_path"]).is_file()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the JSON's ./data/... paths now resolve through the occ root's parents
    code, err = run(capsys, monkeypatch, "merge-occ", "--infos-dir", tmp_path / "data/nuscenes", "--occ-root",
                    openocc, "--splits", "val", "--path-style", "absolute")
    assert code == 0, err
    info = load_pickle(openocc / "nuscenes_infos_temporal_val_occ_gt.pkl")["infos"][0]
    assert info["occ_invalid_path"] == str(openocc / "val/scene-0002/000_occ_invalid.npy")


def test_occ3d_merge_adds_challenge_and_bevdet_keys(occ3d, capsys, monkeypatch, tmp_path):
    write_infos(occ3d, drop_scene_name=True)
    code, err = run(capsys, monkeypatch, *OCC3D_ARGS, "--verify", "--report", "r.json")
    assert code == 0, err
    merged = load_pickle(occ3d / "nuscenes_infos_temporal_train_occ3d.pkl")
    first = merged["infos"][0]
    tok = token("scene-0001", 0)
    assert list(first)[-3:] == ["scene_name", "occ_gt_path", "occ_path"]
    assert first["scene_name"] == "scene-0001"
    assert first["occ_gt_path"] == f"gts/scene-0001/{tok}/labels.npz"
    assert first["occ_path"] == f"./data/nuscenes/gts/scene-0001/{tok}"
    assert (tmp_path / first["occ_path"] / "labels.npz").is_file()
    report = json.loads(Path("r.json").read_text())
    assert report["gt_without_info"] == {str(Path("data/nuscenes/gts")): {"samples": 2, "scenes": {"scene-0003": 2}}}
    assert report["verify"] == {"samples": 5, "problems": []}

    code, err = run(capsys, monkeypatch, *OCC3D_ARGS, "--path-style", "relative", "--path-root", "data")
    assert code == 0, err
    first = load_pickle(occ3d / "nuscenes_infos_temporal_train_occ3d.pkl")["infos"][0]
    assert first["occ_gt_path"] == os.path.join("nuscenes", "gts", "scene-0001", tok, "labels.npz")
    assert first["occ_path"] == os.path.join("nuscenes", "gts", "scene-0001", tok)


def test_occ3d_missing_extra_corrupt_and_wrongly_shaped(occ3d, capsys, monkeypatch):
    gts = occ3d / "gts"
    shutil.rmtree(gts / "scene-0002" / token("scene-0002", 1))
    (gts / "scene-0001" / token("scene-0001", 2) / "labels.npz").unlink()
    code, err = run(capsys, monkeypatch, *OCC3D_ARGS)
    assert code == 2
    assert "val.pkl: 1 of 2 infos have no entry in" in err and token("scene-0002", 1) in err
    assert "ground truth files of 1 infos not found" in err

    code, err = run(capsys, monkeypatch, *OCC3D_ARGS, "--allow-missing", "--report", "r.json")
    assert code == 0, err
    assert len(load_pickle(occ3d / "nuscenes_infos_temporal_val_occ3d.pkl")["infos"]) == 1
    assert json.loads(Path("r.json").read_text())["gt_without_info"][str(Path("data/nuscenes/gts"))]["samples"] == 2

    (gts / "scene-0001" / token("scene-0001", 0) / "labels.npz").write_bytes(b"not a zip")
    save_labels(gts / "scene-0001" / token("scene-0001", 1) / "labels.npz", semantics_value=18)
    code, err = run(capsys, monkeypatch, *OCC3D_ARGS, "--allow-missing", "--verify")
    assert code == 2
    assert "2 problems in ground truth files" in err and "not a readable .npz" in err
    assert "semantics has value 18 (allowed 0-17)" in err


def test_occ3d_real_frame_merges_and_verifies(real_occ3d_frame, tmp_path, capsys, monkeypatch):
    info = make_info("scene-1077", 0, 1)
    info["token"] = REAL_TOKEN
    del info["scene_name"]
    dump_pickle({"infos": [info], "metadata": {"version": "v1.0-trainval"}}, tmp_path / "nuscenes_infos_temporal_val.pkl")
    code, err = run(capsys, monkeypatch, "merge-occ", "--format", "occ3d", "--infos-dir", tmp_path, "--occ-root",
                    real_occ3d_frame, "--splits", "val", "--out-dir", tmp_path, "--verify")
    assert code == 0, err
    [merged] = load_pickle(tmp_path / "nuscenes_infos_temporal_val_occ3d.pkl")["infos"]
    assert merged["scene_name"] == "scene-1077"
    assert merged["occ_gt_path"] == f"gts/scene-1077/{REAL_TOKEN}/labels.npz"
    assert "verified 1 samples: no problems" in err


def test_scene_mismatch_is_an_error(openocc, capsys, monkeypatch, tmp_path):
    path = tmp_path / "data/nuscenes/nuscenes_infos_temporal_val.pkl"
    data = load_pickle(path)
    data["infos"][0]["scene_name"] = "scene-0009"
    dump_pickle(data, path)
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS, "--allow-missing")
    assert code == 2 and "1 infos name another scene than the ground truth release" in err
    assert "info: scene-0009, ground truth: scene-0002" in err


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickles_and_other_targets_are_refused(openocc, capsys, monkeypatch, tmp_path):
    path = tmp_path / "data/nuscenes/nuscenes_infos_temporal_train.pkl"
    path.write_bytes(pickle.dumps({"infos": [Exploit()], "metadata": {}}))
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS)
    assert code == 2 and not Path("pwned").exists()
    assert err.strip().splitlines()[-1].startswith(f"error: {Path('data/nuscenes/nuscenes_infos_temporal_train.pkl')}: "
                                                   "refused to load: the pickle imports posix.system")

    dump_pickle({"data_list": [], "metainfo": {"version": "v1.0-mini"}}, path)
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS)
    assert code == 2 and "a mmdet3d-v2 pickle, not bevformer: pass --target mmdet3d-v2" in err


@pytest.mark.parametrize("args, message", [
    (("--splits", "train,tset"), "holds the splits train, val of this tag: tset; pass --splits with those"),
    (("--extra-tag", "mini"), "mini_infos_temporal_train.pkl: infos file not found"),
    (("--path-style", "relative"), "--path-style relative needs --path-root DIR"),
    (("--path-root", "data"), "--path-root only applies to --path-style relative"),
    (("--format", "occ3d"), "--occ-root data/occ_gt_release_v1_0 holds openocc-v1 ground truth, not occ3d: "
                            "pass --format openocc-v1"),
])
def test_one_line_errors(openocc, capsys, monkeypatch, args, message):
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS, *args)
    assert code == 2
    assert err.count("\n") == 1 and message in err


def test_missing_and_malformed_inputs(openocc, capsys, monkeypatch):
    code, err = run(capsys, monkeypatch, "merge-occ", "--infos-dir", "data/nuscenes", "--occ-root", "data/nope")
    assert code == 2 and "--occ-root data/nope: directory not found" in err
    (openocc / "occ_gt_val.json").write_text('{"scene-0002": {,}}')
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS)
    assert code == 2 and "occ_gt_val.json: malformed JSON" in err and "(byte 16)" in err
    (openocc / "occ_gt_val.json").unlink()
    code, err = run(capsys, monkeypatch, *OPENOCC_ARGS)
    assert code == 2 and "occ_gt_val.json: index file not found" in err
    assert not list(openocc.glob("*.pkl"))
