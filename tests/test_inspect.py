"""`occprep inspect` on create-infos output for a generated mini, an mmdet3d 1.x pickle and bad files."""

from __future__ import annotations

import json
import os
import pickle
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from occprep.cli import cli
from occprep.config import dataset_config
from occprep.errors import OccprepError
from occprep.inspection import LEGACY, V1X, consumers, inspect_pickle
from occprep.pickles import dump_pickle, load_pickle


@pytest.fixture(scope="module")
def val_tables(generated_mini) -> dict:
    """The generated mini's tables as JSON records, sample and sample_annotation only those of the
    mini_val scenes (the ones `mini_infos` holds)."""
    scenes = generated_mini.split_samples("val")
    tokens = {token for scene_tokens in scenes.values() for token in scene_tokens}
    return {"sample": [s for s in generated_mini.table("sample") if s["token"] in tokens],
            "scene": [s for s in generated_mini.table("scene") if s["name"] in scenes],
            "sample_annotation": [a for a in generated_mini.table("sample_annotation") if a["sample_token"] in tokens],
            "category": generated_mini.table("category"), "instance": generated_mini.table("instance")}


def test_legacy_pickle_against_the_tables(mini_infos, val_tables):
    report = inspect_pickle(mini_infos)
    samples = val_tables["sample"]
    assert len(val_tables["scene"]) == 1  # the generated mini's one mini_val scene
    assert (report.generation, report.version, report.samples, report.scenes) == (LEGACY, "v1.0-mini", len(samples), 1)
    assert report.samples_per_scene == {"min": len(samples), "max": len(samples), "mean": float(len(samples))}
    # class histogram: every annotation's category, mapped to detection names, straight from the tables
    category = {c["token"]: c["name"] for c in val_tables["category"]}
    instance_category = {i["token"]: category[i["category_token"]] for i in val_tables["instance"]}
    names = dataset_config("nuscenes").detection_names
    expected = Counter(names.get(instance_category[a["instance_token"]], instance_category[a["instance_token"]])
                       for a in val_tables["sample_annotation"])
    assert report.classes == dict(expected)
    assert list(report.classes.values()) == sorted(report.classes.values(), reverse=True)
    fits = {fit.name: fit for fit in report.consumers}
    assert fits["BEVFormer"].ok
    assert fits["OccNet"].missing_info_keys == ("occ_gt_path", "flow_gt_path", "occ_invalid_path")
    assert "occ_path" in fits["BEVDet/FlashOcc"].missing_info_keys
    assert report.zero_can_bus == 0 and report.without_occupancy == len(samples)
    roots = {root.key: root for root in report.paths}
    assert roots["lidar_path"].root == "./data/nuscenes/samples/LIDAR_TOP/"
    assert roots["cams.data_path"].count == 6 * len(samples) and roots["cams.data_path"].checked == 200
    assert roots["lidar_path"].found == 0


def test_zero_can_bus_occupancy_and_existing_paths(mini_infos, tmp_path):
    """Zero or absent can_bus, occ_gt_path on some infos, and lidar files that exist for every other info."""
    data = load_pickle(mini_infos)
    infos = data["infos"]
    for info in infos[:3]:
        info["can_bus"] = np.zeros(18)
    del infos[3]["can_bus"]
    for info in infos[:10]:
        info["occ_gt_path"] = f"gts/{info['scene_name']}/{info['token']}/labels.npz"
    lidar = [tmp_path / f"lidar{i}.bin" for i in range(len(infos))]
    for i, (info, path) in enumerate(zip(infos, lidar)):
        info["lidar_path"] = str(path)
        if i % 2 == 0:
            path.touch()
    dump_pickle(data, tmp_path / "edited.pkl")
    report = inspect_pickle(tmp_path / "edited.pkl", all_paths=True)
    assert report.zero_can_bus == 4 and report.zero_can_bus_scenes == [infos[0]["scene_name"]]
    assert report.without_occupancy == len(infos) - 10
    assert report.keys["occ_gt_path"] == 10
    roots = {root.key: root for root in report.paths}
    assert roots["lidar_path"].root == f"{tmp_path}/"
    assert (roots["lidar_path"].checked, roots["lidar_path"].found) == (len(infos), (len(infos) + 1) // 2)
    assert roots["occ_gt_path"].root == f"gts/{infos[0]['scene_name']}/"
    assert report.paths_checked == "all"


def test_mmdet3d_1x_pickle(tmp_path):
    metainfo = {"categories": {"car": 0, "pedestrian": 1}, "dataset": "nuscenes", "version": "v1.0-trainval"}
    data_list = [{"sample_idx": i, "token": f"t{i}", "lidar_points": {"lidar_path": f"n015__LIDAR_TOP__{i}.pcd.bin"},
                  "images": {"CAM_FRONT": {"img_path": f"n015__CAM_FRONT__{i}.jpg", "cam2img": np.eye(3)}},
                  "instances": [{"bbox_label_3d": 0}, {"bbox_label_3d": 1}, {"bbox_label_3d": 0}]}
                 for i in range(4)]
    dump_pickle({"metainfo": metainfo, "data_list": data_list}, tmp_path / "v1x.pkl")
    report = inspect_pickle(tmp_path / "v1x.pkl")
    assert (report.generation, report.version, report.samples, report.scenes) == (V1X, "v1.0-trainval", 4, None)
    assert report.classes == {"car": 8, "pedestrian": 4}
    assert [fit.name for fit in report.consumers if not fit.wrong_generation] == ["mmdet3d-1.x"]
    assert {root.key: root.count for root in report.paths} == {"lidar_path": 4, "cams.data_path": 4}


def test_cli_human_and_json(mini_infos, val_tables):
    text = CliRunner().invoke(cli, ["inspect", str(mini_infos)], catch_exceptions=False)
    assert text.exit_code == 0
    assert "legacy (infos/metadata" in text.output and "[ok]   BEVFormer" in text.output
    assert "[miss] OccNet: missing occ_gt_path, flow_gt_path, occ_invalid_path" in text.output
    as_json = CliRunner().invoke(cli, ["inspect", str(mini_infos), "--json", "--quiet"], catch_exceptions=False)
    report = json.loads(as_json.output)
    assert report["samples"] == len(val_tables["sample"]) and report["version"] == "v1.0-mini"


def test_not_an_info_pickle_and_a_hostile_pickle(tmp_path):
    dump_pickle([1, 2, 3], tmp_path / "list.pkl")
    with pytest.raises(OccprepError, match="not an info pickle"):
        inspect_pickle(tmp_path / "list.pkl")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(os.system))
    with pytest.raises(OccprepError, match="refused to load"):
        inspect_pickle(tmp_path / "evil.pkl")


def test_consumer_lists_are_complete():
    names = [c.name for c in consumers()]
    assert names == ["BEVFormer", "OccNet", "Occ3D-baseline", "OccNet (OpenOcc v2)", "SurroundOcc", "OpenOccupancy",
                     "BEVDet/FlashOcc",
                     "mmdet3d-1.0 (StreamPETR, SparseBEV, Sparse4D base)", "StreamPETR", "SparseBEV/SparseOcc",
                     "mmdet3d-1.x", "UniAD", "VAD"]
    for consumer in consumers():
        assert consumer.reads in ("legacy", "v1.x") and consumer.info_keys and consumer.cam_keys
        assert consumer.boxes in ("legacy", "rc")
        assert len(set(consumer.info_keys)) == len(consumer.info_keys)


def test_paths_that_resolve_from_the_pickles_folder_are_pointed_out(mini_infos, tmp_path):
    data = load_pickle(mini_infos)
    (tmp_path / "sub" / "gts").mkdir(parents=True)
    for i, info in enumerate(data["infos"]):
        info["occ_gt_path"] = f"gts/{i}.npz"
        (tmp_path / "sub" / "gts" / f"{i}.npz").touch()
    dump_pickle(data, tmp_path / "sub" / "infos.pkl")
    roots = {root.key: root for root in inspect_pickle(tmp_path / "sub" / "infos.pkl").paths}
    occ = roots["occ_gt_path"]
    assert (occ.found, occ.better_base, occ.found_from_better_base) == (0, str(tmp_path / "sub"), len(data["infos"]))
    assert roots["lidar_path"].better_base is None
