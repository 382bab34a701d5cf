"""create-infos --target (mmdet3d, mmdet3d-v2, bevdet), convert, inspect, merge-occ and show on every
target, checked against nuscenes-devkit and the reference algorithms (target_oracle), on the real mini
scene and on generated data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import devkit_oracle as oracle
import target_oracle
from helpers import assert_same, digest, run_cli, working_directory
from occprep import boxes
from occprep.cli import cli
from occprep.inspection import inspect_pickle
from occprep.pickles import dump_pickle, load_pickle
from occprep.show import drawable
from occprep.synth import synthesize
from occprep.targets import identify

ALL = "bevformer,mmdet3d,mmdet3d-v2,bevdet,streampetr,sparsebev,uniad,vad"
FILES = {"bevformer": "nuscenes_infos_temporal_{split}.pkl", "mmdet3d": "mmdet3d/nuscenes_infos_{split}.pkl",
         "mmdet3d-v2": "mmdet3d-v2/nuscenes_infos_{split}.pkl", "bevdet": "bevdetv2-nuscenes_infos_{split}.pkl",
         "streampetr": "nuscenes2d_temporal_infos_{split}.pkl", "sparsebev": "nuscenes_infos_{split}_mini_sweep.pkl",
         "uniad": "uniad/nuscenes_infos_temporal_{split}.pkl", "vad": "vad_nuscenes_infos_temporal_{split}.pkl"}
"""Where one create-infos run with every target puts each split (mmdet3d's two generations share names)."""


@pytest.fixture(scope="module", params=["generated", "real"])
def made(request, tmp_path_factory):
    """(base folder, devkit NuScenes, out folder) after `create-infos --target ALL` with the default root,
    run from `base` where the dataset is laid out as data/nuscenes + data/can_bus."""
    from nuscenes import NuScenes

    data = request.getfixturevalue("generated_mini" if request.param == "generated" else "real_mini")
    base = data.lay_out(tmp_path_factory.mktemp(f"targets-{request.param}"))
    with working_directory(base):
        result = CliRunner().invoke(cli, ["create-infos", "--version", "v1.0-mini", "--no-file-check", "--out-dir",
                                          "out", "--target", ALL, "--quiet"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        nusc = NuScenes(version="v1.0-mini", dataroot="./data/nuscenes", verbose=False)
    return base, nusc, base / "out"


def output(made, target: str, split: str):
    return load_pickle(made[2] / FILES[target].format(split=split))


def splits_with_samples(made):
    return [split for split in ("train", "val") if output(made, "bevformer", split)["infos"]]


def test_every_target_is_written_with_its_file_names(made):
    written = sorted(str(p.relative_to(made[2])) for p in made[2].rglob("*.pkl"))
    assert written == sorted(name.format(split=split) for name in FILES.values() for split in ("train", "val"))


def test_mmdet3d_matches_the_devkit(made):
    base, nusc, _ = made
    for split in splits_with_samples(made):
        bevformer = output(made, "bevformer", split)
        mmdet3d = output(made, "mmdet3d", split)
        assert list(mmdet3d) == ["infos", "metadata"] and mmdet3d["metadata"] == bevformer["metadata"]
        for info, reference in zip(mmdet3d["infos"], bevformer["infos"], strict=True):
            target_oracle.assert_mmdet3d_info(nusc, info, reference)


def test_bevdet_matches_the_devkit(made):
    base, nusc, _ = made
    for split in splits_with_samples(made):
        mmdet3d = output(made, "mmdet3d", split)["infos"]
        bevdet = output(made, "bevdet", split)
        for info, reference in zip(bevdet["infos"], mmdet3d, strict=True):
            assert info["lidar_path"] == reference["lidar_path"].replace("./data/nuscenes", "data/nuscenes", 1)
            expected = {**reference, "lidar_path": info["lidar_path"], "sweeps": [],
                        "cams": {name: {**cam, "data_path": cam["data_path"].replace("./", "", 1)}
                                 for name, cam in reference["cams"].items()}}
            target_oracle.assert_bevdet_info(nusc, info, expected, "./data/nuscenes")
            assert [cam["data_path"] for cam in info["cams"].values()] == [
                cam["data_path"] for cam in expected["cams"].values()]


def test_streampetr_matches_the_devkit(made):
    nusc = made[1]
    for split in splits_with_samples(made):
        streampetr = output(made, "streampetr", split)
        bevformer, mmdet3d = output(made, "bevformer", split)["infos"], output(made, "mmdet3d", split)["infos"]
        assert streampetr["metadata"] == {"version": "v1.0-mini"}
        for info, reference, rc6 in zip(streampetr["infos"], bevformer, mmdet3d, strict=True):
            target_oracle.assert_streampetr_info(nusc, info, reference, rc6)
            assert (info["sweeps"] == []) == (info["frame_idx"] == 0)  # its loader starts a sequence there


def test_sparsebev_matches_the_devkit(made):
    nusc = made[1]
    for split in splits_with_samples(made):
        sparsebev = output(made, "sparsebev", split)
        for info, rc6 in zip(sparsebev["infos"], output(made, "mmdet3d", split)["infos"], strict=True):
            target_oracle.assert_sparsebev_info(nusc, info, rc6, "data/nuscenes")
        starts = [i for i, info in enumerate(sparsebev["infos"]) if not nusc.get("sample", info["token"])["prev"]]
        assert starts and all(sparsebev["infos"][i]["sweeps"] == [] for i in starts)
        assert any(len(info["sweeps"]) == 5 for info in sparsebev["infos"])


def test_sparsebev_stops_where_a_camera_chain_ends(writable_mini, tmp_path, monkeypatch, capsys):
    """CAM_BACK's chain cut two readings before a keyframe: that sample gets 2 camera sweeps, not 5 (the
    reference would repeat its second sweep three times)."""
    import json

    version = writable_mini.root / "v1.0-mini"
    records = json.loads((version / "sample_data.json").read_text())
    by_token = {r["token"]: r for r in records}
    sample = next(s for s in writable_mini.table("sample") if s["prev"])
    keyframe = next(r for r in records if r["sample_token"] == sample["token"] and r["is_key_frame"]
                    and "/CAM_BACK/" in r["filename"])
    by_token[by_token[keyframe["prev"]]["prev"]]["prev"] = ""
    (version / "sample_data.json").write_text(json.dumps(records))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--no-file-check", "--target", "sparsebev",
                            "--out-dir", "out", "--quiet"], monkeypatch, capsys)
    assert code == 0, err
    infos = {i["token"]: i for split in ("train", "val")
             for i in load_pickle(tmp_path / "out" / FILES["sparsebev"].format(split=split))["infos"]}
    assert len(infos[sample["token"]]["sweeps"]) == 2
    assert sum(len(i["sweeps"]) == 5 for i in infos.values()) > len(infos) / 2


def test_mmdet3d_v2_matches_the_devkit(made):
    base, nusc, _ = made
    with working_directory(base):
        for split in ("train", "val"):
            v2 = output(made, "mmdet3d-v2", split)
            assert list(v2) == ["metainfo", "data_list"]
            metainfo = v2["metainfo"]
            assert list(metainfo) == ["categories", "dataset", "version", "info_version"]
            assert (metainfo["dataset"], metainfo["version"], metainfo["info_version"]) == ("nuscenes", "v1.0-mini", "1.1")
            tokens = [info["token"] for info in output(made, "bevformer", split)["infos"]]
            assert [entry["token"] for entry in v2["data_list"]] == tokens
            unmapped = list(dict.fromkeys(
                ann["category_name"] for t in tokens for ann in map(lambda a: nusc.get("sample_annotation", a),
                                                                    nusc.get("sample", t)["anns"])
                if ann["category_name"] not in oracle.DETECTION_NAMES))
            expected = {name: i for i, name in enumerate(target_oracle.MMDET3D_CLASSES)}
            assert metainfo["categories"] == {**expected, **{name: -1 for name in unmapped}}
            for index, entry in enumerate(v2["data_list"]):
                target_oracle.assert_v2_entry(nusc, entry, index, "./data/nuscenes", annotated=True)


def test_all_targets_in_one_run_equal_each_target_alone(made, tmp_path):
    base = made[0]
    for target in ("mmdet3d-v2", "bevdet", "streampetr"):
        with working_directory(base):
            result = CliRunner().invoke(cli, ["create-infos", "--version", "v1.0-mini", "--no-file-check", "--out-dir",
                                              str(tmp_path / target), "--target", target, "--quiet"])
        assert result.exit_code == 0, result.output
        name = Path(FILES[target]).name.format(split="val")
        assert digest(tmp_path / target / name) == digest(made[2] / FILES[target].format(split="val"))


def test_targets_of_one_run_share_the_camera_boxes(generated_mini, tmp_path, monkeypatch):
    """mmdet3d-v2 and StreamPETR read the same box/camera pairs: they are projected once in a run, before
    the writing processes fork."""
    import occprep.infos

    calls = tmp_path / "calls"
    projected = occprep.infos.camera_boxes_on_cores

    def counted(scan):
        with open(calls, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return projected(scan)

    monkeypatch.setattr(occprep.infos, "camera_boxes_on_cores", counted)
    base = generated_mini.lay_out(tmp_path / "base")
    with working_directory(base):
        result = CliRunner().invoke(cli, ["create-infos", "--version", "v1.0-mini", "--no-file-check", "--out-dir",
                                          "out", "--target", "mmdet3d-v2,streampetr", "--quiet"])
    assert result.exit_code == 0, result.output
    assert calls.read_text().split() == [str(os.getpid())]


def test_boxes_projected_in_keyframe_ranges_join_to_those_of_all(real_mini):
    from occprep.config import dataset_config
    from occprep.projection import camera_boxes, joined
    from occprep.reporting import Reporter
    from occprep.scan import read_scan_tables, scan

    config = dataset_config("nuscenes")
    scanned = scan(read_scan_tables(real_mini.root / real_mini.version, config, Reporter("test", quiet=True),
                                    details=True), config)
    whole = camera_boxes(scanned)
    keyframes = len(scanned.keyframes.token)
    for middle in (0, 1, keyframes // 2, keyframes):
        parts = joined([camera_boxes(scanned, slice(middle)), camera_boxes(scanned, slice(middle, None))])
        for name, values in vars(whole).items():
            np.testing.assert_array_equal(getattr(parts, name), values, err_msg=name)
    assert len(whole.box) > 0


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    """create-infos --target ALL on a generated v1.0-test (no annotations)."""
    out = tmp_path_factory.mktemp("test-split")
    synthesize(out, "v1.0-test", scenes=2, samples_per_scene=4, occ=(), blobs="none")
    (out / "can_bus").mkdir(exist_ok=True)  # test scenes have no CAN bus files
    with working_directory(out):
        result = CliRunner().invoke(cli, ["create-infos", "--root-path", "nuscenes", "--canbus", ".", "--version",
                                          "v1.0-test", "--no-file-check", "--out-dir", "out", "--target", ALL,
                                          "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out / "out"


def test_test_splits_have_no_annotations(test_split):
    bevdet = load_pickle(test_split / "bevdetv2-nuscenes_infos_test.pkl")["infos"]
    assert len(bevdet) == 8 and all(list(i)[-4:] == ["timestamp", "scene_token", "scene_name", "occ_path"] for i in bevdet)
    mmdet3d = load_pickle(test_split / "mmdet3d" / "nuscenes_infos_test.pkl")["infos"]
    assert all(list(i) == target_oracle.RC6_KEYS[:9] for i in mmdet3d)
    sparsebev = load_pickle(test_split / "nuscenes_infos_test_sweep.pkl")["infos"]
    assert all(list(i) == target_oracle.RC6_KEYS[:9] for i in sparsebev)
    assert [len(i["sweeps"]) for i in sparsebev] == [0, 5, 5, 5] * 2  # camera sweeps on test too
    v2 = load_pickle(test_split / "mmdet3d-v2" / "nuscenes_infos_test.pkl")
    assert len(v2["metainfo"]["categories"]) == 10
    assert all(entry["instances"] == [] and "cam_instances" not in entry for entry in v2["data_list"])


def test_an_empty_split_is_written_for_mmdet3d_v2(generated_mini, tmp_path):
    """The reference crashes on a split with no samples; occprep writes it (one val scene only)."""
    base = generated_mini.lay_out(tmp_path)
    (tmp_path / "splits.json").write_text('{"train": [], "val": ["scene-0103"]}')
    with working_directory(base):
        result = CliRunner().invoke(cli, ["create-infos", "--version", "v1.0-mini", "--no-file-check", "--out-dir",
                                          "out", "--target", "mmdet3d-v2", "--splits", "splits.json"])
    assert result.exit_code == 0, result.output
    empty = load_pickle(tmp_path / "out" / "nuscenes_infos_train.pkl")
    assert empty["data_list"] == [] and len(empty["metainfo"]["categories"]) == 10
    assert "train is empty: no scene of these tables belongs to it" in result.output


# ----------------------------------------------------------------------------- convert


def test_convert_round_trips_equal_create_infos(made, tmp_path):
    """Every target to every other, filling from the tables, equals create-infos of the target with the
    same root (converted paths keep the input's root; BEVDet's reference default root differs)."""
    base = made[0]
    split = splits_with_samples(made)[0]
    explicit = tmp_path / "explicit"
    with working_directory(base):
        result = CliRunner().invoke(cli, ["create-infos", "--version", "v1.0-mini", "--no-file-check", "--root-path",
                                          "./data/nuscenes", "--out-dir", str(explicit), "--target", ALL, "--quiet"])
        assert result.exit_code == 0, result.output
        for source in FILES:
            for target in FILES:
                if source == target:
                    continue
                out = tmp_path / f"{source}-{target}.pkl"
                code = CliRunner().invoke(cli, ["convert", str(explicit / FILES[source].format(split=split)), "--to",
                                                target, "--out", str(out), "--root-path", "./data/nuscenes",
                                                "--canbus", "./data", "--quiet"])
                assert code.exit_code == 0, (source, target, code.output)
                assert_same(load_pickle(out), load_pickle(explicit / FILES[target].format(split=split)),
                            f"{source} -> {target}")


def test_convert_without_tables_names_what_is_missing(made, tmp_path, monkeypatch, capsys):
    split = splits_with_samples(made)[0]
    bevformer = made[2] / FILES["bevformer"].format(split=split)
    mmdet3d = made[2] / FILES["mmdet3d"].format(split=split)
    code, _, err = run_cli(["convert", mmdet3d, "--to", "bevformer", "--out", tmp_path / "x.pkl"], monkeypatch, capsys)
    assert code == 2 and "lacks prev, next, can_bus, frame_idx, scene_token, scene_name for bevformer" in err
    assert "pass --root-path" in err and "--canbus" in err and not (tmp_path / "x.pkl").exists()
    code, _, err = run_cli(["convert", bevformer, "--to", "mmdet3d-v2", "--out", tmp_path / "x.pkl"], monkeypatch, capsys)
    assert code == 2 and "lacks cam_instances for mmdet3d-v2" in err
    code, _, err = run_cli(["convert", bevformer, "--to", "mmdet3d", "--out", bevformer], monkeypatch, capsys)
    assert code == 2 and "convert never writes in place" in err
    code, _, err = run_cli(["convert", bevformer, "--to", "mmdet3d", "--out", tmp_path / "rc.pkl"], monkeypatch, capsys)
    assert code == 0, err
    converted = load_pickle(tmp_path / "rc.pkl")["infos"]
    for info, original in zip(converted, load_pickle(bevformer)["infos"]):
        if len(original["gt_boxes"]):
            np.testing.assert_allclose(info["gt_boxes"], boxes.convert(original["gt_boxes"], "legacy", "rc"))
            assert not np.allclose(info["gt_boxes"][:, 3:], original["gt_boxes"][:, 3:])


def test_convert_default_output_name_and_a_mislabelled_pickle(made, tmp_path, monkeypatch, capsys):
    split = splits_with_samples(made)[0]
    source = tmp_path / "nuscenes_infos_temporal_x.pkl"
    source.write_bytes((made[2] / FILES["bevformer"].format(split=split)).read_bytes())
    code, _, err = run_cli(["convert", source, "--to", "mmdet3d"], monkeypatch, capsys)
    assert code == 0 and (tmp_path / "nuscenes_infos_x.pkl").is_file(), err
    code, _, err = run_cli(["convert", tmp_path / "nuscenes_infos_x.pkl", "--to", "mmdet3d-v2", "--root-path",
                            made[0] / "data" / "nuscenes"], monkeypatch, capsys)
    assert code == 0 and (tmp_path / "mmdet3d-v2" / "nuscenes_infos_x.pkl").is_file(), err
    # an mmdet3d-structured pickle whose boxes are still legacy (the reference's upgrade-script mistake)
    data = load_pickle(source)
    for info in data["infos"]:
        for key in ("prev", "next", "can_bus", "frame_idx", "scene_token", "scene_name"):
            del info[key]
    dump_pickle(data, tmp_path / "nuscenes_infos_y.pkl")
    code, _, err = run_cli(["convert", tmp_path / "nuscenes_infos_y.pkl", "--to", "bevformer"], monkeypatch, capsys)
    assert code == 2 and "its boxes are in the legacy convention" in err


# ----------------------------------------------------------------------------- inspect, show, merge-occ


def test_inspect_names_the_target_and_measures_the_boxes(made, tmp_path):
    split = splits_with_samples(made)[0]
    for target, convention in (("bevformer", "legacy"), ("mmdet3d", "rc"), ("mmdet3d-v2", "rc"), ("bevdet", "rc"),
                               ("streampetr", "rc"), ("uniad", "legacy"), ("vad", "legacy")):
        report = inspect_pickle(made[2] / FILES[target].format(split=split))
        assert (report.target, report.box_convention, report.warnings) == (target, convention, [])
        assert report.long_first_share == (0.0 if convention == "legacy" else 1.0)
        compatible = {fit.name for fit in report.consumers if not fit.wrong_boxes and not fit.wrong_generation}
        rc_legacy = {"BEVDet/FlashOcc", "mmdet3d-1.0 (StreamPETR, SparseBEV, Sparse4D base)", "StreamPETR",
                     "SparseBEV/SparseOcc"}
        legacy = {"BEVFormer", "OccNet", "Occ3D-baseline", "OccNet (OpenOcc v2)", "SurroundOcc", "OpenOccupancy",
                  "UniAD", "VAD"}
        assert compatible == {"bevformer": legacy, "mmdet3d": rc_legacy, "mmdet3d-v2": {"mmdet3d-1.x"},
                              "bevdet": rc_legacy, "streampetr": rc_legacy, "uniad": legacy, "vad": legacy}[target]
        fitting = {fit.name for fit in report.consumers if fit.ok}
        assert fitting == {"bevformer": {"BEVFormer"}, "mmdet3d": {"mmdet3d-1.0 (StreamPETR, SparseBEV, Sparse4D base)"},
                           "mmdet3d-v2": {"mmdet3d-1.x"}, "bevdet": {"BEVDet/FlashOcc",
                                                                  "mmdet3d-1.0 (StreamPETR, SparseBEV, Sparse4D base)"},
                           "streampetr": {"StreamPETR", "mmdet3d-1.0 (StreamPETR, SparseBEV, Sparse4D base)"},
                           "uniad": {"BEVFormer", "UniAD"}, "vad": {"BEVFormer", "VAD"}}[target]
    # the reference upgrade script's fault: a data_list pickle with the legacy boxes copied in
    v2 = output(made, "mmdet3d-v2", split)
    for entry, info in zip(v2["data_list"], output(made, "bevformer", split)["infos"]):
        for instance, legacy in zip(entry["instances"], info["gt_boxes"]):
            instance["bbox_3d"] = legacy.tolist()
    dump_pickle(v2, tmp_path / "nuscenes_infos_val.pkl")
    text = CliRunner().invoke(cli, ["inspect", str(tmp_path / "nuscenes_infos_val.pkl")]).output
    assert "WARNING     the structure is mmdet3d-v2's (rc boxes), but the boxes are in the legacy convention" in text
    # a BEVDet pickle whose ann_infos were left in the LiDAR frame
    bevdet = output(made, "bevdet", split)
    for info in bevdet["infos"]:
        info["ann_infos"] = ([np.r_[box, 0.0, 0.0] for box in info["gt_boxes"][:len(info["ann_infos"][0])]],
                             info["ann_infos"][1])
    dump_pickle(bevdet, tmp_path / "bevdetv2-nuscenes_infos_val.pkl")
    report = inspect_pickle(tmp_path / "bevdetv2-nuscenes_infos_val.pkl")
    assert any("not in BEVDet's ego frame" in w for w in report.warnings)


def test_show_draws_every_target_with_the_same_boxes(made, tmp_path):
    split = splits_with_samples(made)[0]
    reference = output(made, "bevformer", split)["infos"][2]
    for target in FILES:
        data = output(made, target, split)
        records = data["data_list"] if target == "mmdet3d-v2" else data["infos"]
        drawn = drawable(records[2], identify(data, Path(FILES[target]).name.format(split=split)), data)
        np.testing.assert_allclose(drawn["gt_boxes"], reference["gt_boxes"], atol=1e-9)
        if target == "mmdet3d-v2":
            for name, cam in drawn["cams"].items():
                np.testing.assert_allclose(cam["sensor2lidar_translation"],
                                           reference["cams"][name]["sensor2lidar_translation"], atol=1e-3)
        result = CliRunner().invoke(cli, ["show", str(made[2] / FILES[target].format(split=split)), "--index", "2",
                                          "--out", str(tmp_path / f"{target}.png"), "--no-occupancy", "--quiet"])
        assert result.exit_code == 0 and (tmp_path / f"{target}.png").stat().st_size > 10_000, result.output


def test_merge_occ_into_bevdet_and_mmdet3d_v2(tmp_path, monkeypatch, capsys):
    synthesize(tmp_path / "data", "v1.0-mini", scenes=2, samples_per_scene=4, occ=("openocc-v1", "occ3d"),
               blobs="none")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--no-file-check", "--out-dir", "infos",
                            "--target", "bevdet,mmdet3d-v2", "--quiet"], monkeypatch, capsys)
    assert code == 0, err
    code, _, err = run_cli(["merge-occ", "--infos-dir", "infos", "--occ-root", "data/nuscenes", "--format", "occ3d",
                            "--target", "bevdet", "--out-dir", "merged", "--verify", "--quiet"], monkeypatch, capsys)
    assert code == 0, err
    for info in load_pickle(tmp_path / "merged" / "bevdetv2-nuscenes_infos_val_occ3d.pkl")["infos"]:
        assert info["occ_path"] == os.path.join("data/nuscenes", "gts", info["scene_name"], info["token"])
        assert list(info)[-2:] == ["occ_path", "occ_gt_path"] and (tmp_path / info["occ_path"] / "labels.npz").is_file()
    code, _, err = run_cli(["merge-occ", "--infos-dir", "infos", "--occ-root", "data/occ_gt_release_v1_0",
                            "--target", "mmdet3d-v2", "--out-dir", "merged", "--quiet"], monkeypatch, capsys)
    assert code == 0, err
    merged = load_pickle(tmp_path / "merged" / "nuscenes_infos_val_occ_gt.pkl")
    assert list(merged) == ["metainfo", "data_list"]
    assert all(list(entry)[-4:] == ["scene_name", "occ_gt_path", "flow_gt_path", "occ_invalid_path"]
               for entry in merged["data_list"])
    code, _, err = run_cli(["merge-occ", "--infos-dir", "infos", "--occ-root", "data/occ_gt_release_v1_0",
                            "--out-dir", "merged"], monkeypatch, capsys)
    assert code == 2 and "holds infos of another target: pass --target bevdet" in err
