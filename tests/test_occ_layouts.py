"""OpenOcc v2, SurroundOcc and OpenOccupancy ground truth: synth writes them from one world, merge-occ,
check and show read them. Expected values come from nuscenes-devkit (LiDAR tokens and files) and from
the layouts as `../shared/docs/occupancy-formats.md` and `consumer-formats.md` §8-10 describe them."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import create_infos_in, digest, run_cli
from occprep.config import occupancy_format
from occprep.occupancy import LAYOUTS, openocc_v1
from occprep.pickles import load_pickle
from occprep.synth import synthesize

OCC = ("openocc-v1", "occ3d", "openocc-v2", "surroundocc", "openoccupancy")
MERGED_VAL = (("openocc-v2", "data/nuscenes", "data/nuscenes/nuscenes_infos_val_occ.pkl"),
              ("surroundocc", "data/nuscenes_occ", "data/nuscenes_infos_val.pkl"),
              ("openoccupancy", "data/nuScenes-Occupancy", "data/nuscenes/nuscenes_occ_infos_val.pkl"))
"""(format, --occ-root, the merged val infos under the name its consumers read)."""


def merge_all(monkeypatch, capsys) -> None:
    for fmt, root, _ in MERGED_VAL:
        code, _, err = merge(["--format", fmt, "--occ-root", root, "--root-path", "data/nuscenes"], monkeypatch, capsys)
        assert code == 0, err


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """`data/` of a generated two-scene mini (scene-0061 in mini_train, scene-0103 in mini_val, 4 samples
    each) with every layout, and the bevformer and mmdet3d infos in `data/nuscenes`."""
    base = tmp_path_factory.mktemp("occ-layouts")
    synthesize(base / "data", "v1.0-mini", scenes=2, samples_per_scene=4, occ=OCC)
    create_infos_in(base, "--target", "bevformer,mmdet3d")
    return base


@pytest.fixture
def at_world(world, tmp_path, monkeypatch) -> Path:
    """A writable copy of `world` as the cwd."""
    shutil.copytree(world / "data", tmp_path / "data", symlinks=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def nusc(world):
    from nuscenes.nuscenes import NuScenes

    return NuScenes("v1.0-mini", str(world / "data" / "nuscenes"), verbose=False)


def by_name(grid: np.ndarray, classes) -> np.ndarray:
    """A label grid as class names ('' for labels outside `classes`)."""
    names = np.array([*classes, ""], dtype=object)
    return names[np.minimum(grid, len(classes))]


def keyframes(nusc):
    for sample in nusc.sample:
        yield sample, nusc.get("scene", sample["scene_token"]), nusc.get("sample_data", sample["data"]["LIDAR_TOP"])


def test_synth_writes_every_layout_from_one_world(world, nusc):
    data = world / "data"
    for sample, scene, lidar in keyframes(nusc):
        with np.load(data / "nuscenes/gts" / scene["name"] / sample["token"] / "labels.npz") as npz:
            occ3d = npz["semantics"]
        with np.load(data / "nuscenes/openocc_v2" / scene["name"] / sample["token"] / "labels.npz") as npz:
            v2, flow = npz["semantics"], npz["flow"]
        assert v2.dtype == np.uint8 and v2.shape == (200, 200, 16) and flow.shape == (200, 200, 16, 2)
        # Same ego-frame grid as Occ3D; each class where Occ3D has one of v2's names ('others' is free in v2).
        v2_fmt, occ3d_fmt = occupancy_format("openocc-v2"), occupancy_format("occ3d")
        named = by_name(occ3d, occ3d_fmt.classes)
        shared = np.isin(named, v2_fmt.classes)
        assert np.array_equal(by_name(v2, v2_fmt.classes)[shared], named[shared])
        assert (v2[~shared] == v2_fmt.free_label).all()
        assert np.abs(flow).max() > 0 and (flow[v2 == v2_fmt.free_label] == 0).all()

        # SurroundOcc: OpenOcc v1's LiDAR-frame grid as an [x, y, z, label] list named by the LiDAR file.
        voxels = np.load(data / "nuscenes_occ/samples" / f"{os.path.basename(lidar['filename'])}.npy")
        assert voxels.dtype == np.int64 and voxels.shape[1] == 4
        split = "train" if scene["name"] == "scene-0061" else "val"
        index = json.loads((data / "occ_gt_release_v1_0" / f"occ_gt_{split}.json").read_text())
        openocc = openocc_v1.labels(str(world / index[scene["name"]][sample["token"]]["occ_gt_path"]),
                                    occupancy_format("openocc-v1"))
        surround = LAYOUTS["surroundocc"].labels(str(data / "nuscenes_occ/samples" / f"{os.path.basename(lidar['filename'])}.npy"),
                                                 occupancy_format("surroundocc"))
        names = by_name(surround, occupancy_format("surroundocc").classes)
        labelled = (names != "") & (names != "noise")
        assert np.array_equal(names[labelled], by_name(openocc, occupancy_format("openocc-v1").classes)[labelled])
        assert labelled.sum() == (openocc != 16).sum()

        # OpenOccupancy: [z, y, x, label] named by scene token and LiDAR token, in its 512 x 512 x 40 grid.
        path = data / "nuScenes-Occupancy" / f"scene_{scene['token']}" / "occupancy" / f"{lidar['token']}.npy"
        fmt = occupancy_format("openoccupancy")
        assert LAYOUTS["openoccupancy"].check({"voxels": str(path)}, fmt) == []
        dense = LAYOUTS["openoccupancy"].labels(str(path), fmt)
        assert dense.shape == (512, 512, 40)
        names = by_name(dense, fmt.classes)
        assert "driveable_surface" in names and "car" in names


def merge(args, monkeypatch, capsys):
    return run_cli(["merge-occ", "--infos-dir", "data/nuscenes", "--splits", "train,val", "--verify", "-q",
                    "--report", "report.json", *args], monkeypatch, capsys)


def test_openocc_v2_merges_into_the_file_its_consumers_read(at_world, nusc, monkeypatch, capsys):
    code, _, err = merge(["--format", "openocc-v2", "--occ-root", "./data/nuscenes"], monkeypatch, capsys)
    assert code == 0, err
    for split in ("train", "val"):
        merged = load_pickle(at_world / f"data/nuscenes/nuscenes_infos_{split}_occ.pkl")
        plain = load_pickle(at_world / f"data/nuscenes/nuscenes_infos_temporal_{split}.pkl")
        assert len(merged["infos"]) == len(plain["infos"]) == 4
        for info, before in zip(merged["infos"], plain["infos"]):
            assert list(info)[:len(before)] == list(before) and list(info)[len(before):] == ["occ_path"]
            assert info["occ_path"] == f"./data/nuscenes/openocc_v2/{info['scene_name']}/{info['token']}/labels.npz"
    report = json.loads(Path("report.json").read_text())
    assert report["verify"] == {"samples": 8, "problems": []}


def test_surroundocc_names_files_by_lidar_reading(at_world, nusc, monkeypatch, capsys):
    args = ["--format", "surroundocc", "--occ-root", "./data/nuscenes_occ"]
    code, _, err = merge(args, monkeypatch, capsys)
    assert code == 2 and "pass --root-path" in err and "\n" not in err.strip()
    code, _, err = merge([*args, "--root-path", "./data/nuscenes"], monkeypatch, capsys)
    assert code == 0, err
    for split in ("train", "val"):
        infos = load_pickle(at_world / f"data/nuscenes_infos_{split}.pkl")["infos"]  # in data/, as its docs say
        for info in infos:
            lidar = nusc.get("sample_data", nusc.get("sample", info["token"])["data"]["LIDAR_TOP"])
            assert info["lidar_token"] == lidar["token"]
            assert info["occ_path"] == f"./data/nuscenes_occ/samples/{os.path.basename(lidar['filename'])}.npy"
            assert os.path.basename(info["lidar_path"]) + ".npy" == os.path.basename(info["occ_path"])


def test_openoccupancy_adds_tokens_and_lidarseg(at_world, nusc, monkeypatch, capsys):
    args = ["--format", "openoccupancy", "--occ-root", "data/nuScenes-Occupancy", "--root-path", "./data/nuscenes"]
    code, out, err = merge([*args, "--report", "r1.json"], monkeypatch, capsys)
    assert code == 0, err
    infos = load_pickle(at_world / "data/nuscenes/nuscenes_occ_infos_val.pkl")["infos"]
    for info in infos:
        sample = nusc.get("sample", info["token"])
        assert (info["scene_token"], info["lidar_token"]) == (sample["scene_token"], sample["data"]["LIDAR_TOP"])
        assert info["lidarseg"] is None
    assert json.loads(Path("r1.json").read_text())["splits"]["val"]["none_values"] == {"lidarseg": 4}

    # With the lidarseg table, `lidarseg` is its file joined onto the root as typed.
    records = [{"token": f"{i:032x}", "sample_data_token": s["data"]["LIDAR_TOP"],
                "filename": f"lidarseg/v1.0-mini/{i:032x}_lidarseg.bin"} for i, s in enumerate(nusc.sample)]
    (at_world / "data/nuscenes/v1.0-mini/lidarseg.json").write_text(json.dumps(records))
    code, _, err = merge(args, monkeypatch, capsys)
    assert code == 0, err
    expected = {r["sample_data_token"]: "./data/nuscenes/" + r["filename"] for r in records}
    for info in load_pickle(at_world / "data/nuscenes/nuscenes_occ_infos_train.pkl")["infos"]:
        assert info["lidarseg"] == expected[info["lidar_token"]]


@pytest.mark.parametrize("fmt, root, suffix", [("openocc-v2", "data/nuscenes", "_openocc_v2"),
                                                ("surroundocc", "data/nuscenes_occ", "_surroundocc"),
                                                ("openoccupancy", "data/nuScenes-Occupancy", "_openoccupancy")])
def test_other_targets_keep_their_name_and_structure(at_world, monkeypatch, capsys, fmt, root, suffix):
    code, _, err = merge(["--format", fmt, "--occ-root", root, "--root-path", "data/nuscenes", "--target", "mmdet3d",
                          "--out-dir", "out"], monkeypatch, capsys)
    assert code == 0, err
    merged = Path("out") / f"nuscenes_infos_val{suffix}.pkl"
    code, out, err = run_cli(["inspect", merged, "--json"], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads(out)["target"] == "mmdet3d"


@pytest.mark.parametrize("fmt, root, damage, message", [
    ("openocc-v2", "data/nuscenes", lambda p: np.savez(p, semantics=np.zeros((200, 200, 16), np.uint8),
                                                         flow=np.zeros((200, 200, 16), np.float32)),
     "flow must be float (200, 200, 16, 2)"),
    ("surroundocc", "data/nuscenes_occ", lambda p: np.save(p, np.array([[0, 0, 0, 17]])), "label out of range 0-16"),
    ("openoccupancy", "data/nuScenes-Occupancy", lambda p: np.save(p, np.array([[40, 0, 0, 3]])),
     "z index out of range [0, 40)"),
])
def test_verify_names_the_bad_file_and_writes_nothing(at_world, monkeypatch, capsys, fmt, root, damage, message):
    files = sorted(p for p in Path(root).rglob("*") if p.suffix in (".npz", ".npy") and "gts" not in p.parts)
    damage(str(files[0]))
    code, _, err = merge(["--format", fmt, "--occ-root", root, "--root-path", "data/nuscenes", "--out-dir", "out"],
                         monkeypatch, capsys)
    assert code == 2 and message in err and str(files[0].name) in err
    assert not Path("out").exists()


def test_missing_files_are_named_and_allow_missing_writes_the_rest(at_world, nusc, monkeypatch, capsys):
    sample = nusc.sample[-1]
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    (at_world / "data/nuscenes_occ/samples" / f"{os.path.basename(lidar['filename'])}.npy").unlink()
    args = ["--format", "surroundocc", "--occ-root", "data/nuscenes_occ", "--root-path", "data/nuscenes", "--out-dir", "out"]
    code, _, err = merge(args, monkeypatch, capsys)
    assert code == 2 and sample["token"] in err and not Path("out").exists()
    code, _, err = merge([*args, "--allow-missing"], monkeypatch, capsys)
    assert code == 0, err
    assert len(load_pickle(Path("out/nuscenes_infos_val.pkl"))["infos"]) == 3


@pytest.mark.parametrize("fmt, given, corrected, what", [
    ("surroundocc", "data/nuscenes_occ/samples", "data/nuscenes_occ", "the samples/ folder itself"),
    ("openoccupancy", "data", "data/nuScenes-Occupancy", "one level above the nuScenes-Occupancy release"),
    ("openocc-v2", "data/nuscenes/openocc_v2", "data/nuscenes", "the openocc_v2/ folder itself"),
])
def test_occ_root_one_level_off(at_world, monkeypatch, capsys, fmt, given, corrected, what):
    code, _, err = merge(["--format", fmt, "--occ-root", given, "--root-path", "data/nuscenes"], monkeypatch, capsys)
    assert code == 2 and what in err and f"use --occ-root {corrected}" in err


def test_wrong_format_is_named(at_world, monkeypatch, capsys):
    code, _, err = merge(["--format", "surroundocc", "--occ-root", "data/nuScenes-Occupancy", "--root-path",
                          "data/nuscenes"], monkeypatch, capsys)
    assert code == 2 and "holds openoccupancy ground truth, not surroundocc: pass --format openoccupancy" in err


def test_check_reports_the_coverage_of_every_layout(at_world, monkeypatch, capsys):
    code, out, err = run_cli(["check", "--root-path", "data/nuscenes", "--canbus", "data", "--no-blobs"],
                             monkeypatch, capsys)
    for title in ("Occ3D release", "OpenOcc v2 release", "SurroundOcc release", "nuScenes-Occupancy release"):
        for split in ("mini_train", "mini_val"):
            assert f"{split}: {title}: 4 of 4 samples have ground truth" in out, out
    shutil.rmtree(next(Path("data/nuScenes-Occupancy").iterdir()))
    code, out, err = run_cli(["check", "--root-path", "data/nuscenes", "--canbus", "data", "--no-blobs"],
                             monkeypatch, capsys)
    assert "nuScenes-Occupancy release: 0 of 4 samples have ground truth" in out


def test_show_draws_each_layout(at_world, monkeypatch, capsys):
    merge_all(monkeypatch, capsys)
    for fmt, root, merged in MERGED_VAL:
        extra = ["--occ-root", root] if fmt == "openoccupancy" else []
        code, out, err = run_cli(["show", merged, "--index", "1", "--out", f"{fmt}.png", *extra], monkeypatch, capsys)
        assert code == 0, err
        assert Path(f"{fmt}.png").stat().st_size > 10_000 and f"(occupancy from {Path(root).resolve()}" in out + err
    code, _, err = run_cli(["show", "data/nuscenes/nuscenes_occ_infos_val.pkl", "--out", "x.png", "--index", "0"],
                           monkeypatch, capsys)
    assert code == 2 and "pass --occ-root" in err and not Path("x.png").exists()


def test_an_output_never_replaces_other_infos(at_world, monkeypatch, capsys):
    args = ["--format", "surroundocc", "--occ-root", "data/nuscenes_occ", "--root-path", "data/nuscenes"]
    before = digest("data/nuscenes/nuscenes_infos_val.pkl")  # the mmdet3d infos
    code, _, err = merge([*args, "--out-dir", "data/nuscenes"], monkeypatch, capsys)
    assert code == 2 and "would replace the mmdet3d infos there; pass another --out-dir" in err
    assert digest("data/nuscenes/nuscenes_infos_val.pkl") == before
    code, _, err = merge(["--format", "openocc-v2", "--occ-root", "data/nuscenes", "--target", "mmdet3d"],
                         monkeypatch, capsys)
    assert code == 0, err
    assert Path("data/nuscenes/nuscenes_infos_val_openocc_v2.pkl").is_file()
    assert not Path("data/nuscenes/nuscenes_infos_val_occ.pkl").exists()  # OccNet's name is for BEVFormer infos


def test_tables_of_another_dataset_are_named(at_world, tmp_path_factory, monkeypatch, capsys):
    other = tmp_path_factory.mktemp("other")
    synthesize(other, "v1.0-mini", scenes=1, samples_per_scene=2, occ=(), seed=1)
    args = ["--format", "openoccupancy", "--occ-root", "data/nuScenes-Occupancy"]
    code, _, err = merge([*args, "--root-path", str(other / "nuscenes")], monkeypatch, capsys)
    assert code == 2 and f"--root-path {other / 'nuscenes'}: its v1.0-mini tables hold none of the 4 samples" in err
    code, _, err = merge([*args, "--root-path", "data/nuscenes", "--version", "v1.0-mni"], monkeypatch, capsys)
    assert code == 2 and "(it holds v1.0-mini); pass --version v1.0-mini" in err


def test_inspect_knows_the_consumer_file_names(at_world, monkeypatch, capsys):
    merge_all(monkeypatch, capsys)
    for _, _, merged in MERGED_VAL:
        code, out, err = run_cli(["inspect", merged, "--json"], monkeypatch, capsys)
        report = json.loads(out)
        assert report["target"] == "bevformer" and report["file_name_matches"] and not report["warnings"], out
