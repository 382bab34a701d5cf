"""`occprep check` on a generated mini laid out as the docs show, and on broken copies of it; the
foreign keys it follows against the real tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import numpy as np
import pytest
from click.testing import CliRunner

import occprep.check
import occprep.tables
from occprep.check import FOREIGN_KEYS, Finding, passed, render_tree
from occprep.cli import cli
from occprep.tables import TABLE_TYPES


@pytest.fixture(scope="module")
def tables(generated_mini) -> dict:
    """The generated mini's 13 tables as the JSON gives them."""
    return {name: generated_mini.table(name) for name in TABLE_TYPES}


@pytest.fixture
def make_tree(generated_mini):
    """make_tree(base, replace=None, can_bus=True) -> base/data: data/nuscenes with the tables linked from
    the generated mini (those in `replace` written instead: records or raw text), its maps and data/can_bus."""
    def make(base: Path, replace: dict = None, can_bus: bool = True) -> Path:
        version = base / "data" / "nuscenes" / "v1.0-mini"
        version.mkdir(parents=True)
        for name in TABLE_TYPES:
            target = version / f"{name}.json"
            if replace and name in replace:
                content = replace[name]
                target.write_text(content if isinstance(content, str) else json.dumps(content))
            else:
                target.symlink_to(generated_mini.root / "v1.0-mini" / f"{name}.json")
        (base / "data" / "nuscenes" / "maps").symlink_to(generated_mini.root / "maps")
        if can_bus:
            (base / "data" / "can_bus").symlink_to(generated_mini.canbus / "can_bus")
        return base / "data"

    return make


def run(base: Path, *args: str):
    cwd = os.getcwd()
    os.chdir(base)
    try:
        return CliRunner().invoke(cli, ["check", *args], catch_exceptions=False)
    finally:
        os.chdir(cwd)


def report(base: Path, *args: str):
    result = run(base, "--report", "r.json", *args)
    return result, json.loads((base / "r.json").read_text())


def statuses(findings: list, *item: str) -> list:
    return [f["status"] for f in findings if tuple(f["item"][: len(item)]) == item]


def test_documented_layout_is_ready(tmp_path, tables, make_tree):
    make_tree(tmp_path)
    result, rep = report(tmp_path, "--no-blobs")
    assert result.exit_code == 0, result.output
    assert rep["ready"] is True and rep["counts"]["error"] == 0
    by_item = {tuple(f["item"]): f for f in rep["findings"]}
    for name, records in tables.items():
        finding = by_item[("data/nuscenes", "v1.0-mini", f"{name}.json")]
        assert finding["status"] == "ok" and finding["message"] == f"{len(records):,} records"
    assert by_item[("data/nuscenes", "v1.0-mini", "foreign keys")]["status"] == "ok"
    assert by_item[("data/nuscenes", "maps")]["message"] == f"{len(tables['map'])} map files present"
    assert by_item[("data/nuscenes", "samples")]["status"] == "skip"
    scenes = len(tables["scene"])
    assert by_item[("data/can_bus",)]["message"].startswith(f"{scenes} of {scenes} scenes have CAN bus")
    assert "[ok]      v1.0-mini" in result.output


def test_blobs_all_present_then_one_missing(tmp_path, tables, make_tree):
    data = make_tree(tmp_path)
    keyframes = [sd["filename"] for sd in tables["sample_data"] if sd["is_key_frame"]]
    for name in keyframes:
        (data / "nuscenes" / name).parent.mkdir(parents=True, exist_ok=True)
        (data / "nuscenes" / name).touch()
    needed = [n for n in keyframes if "/RADAR_" not in n]
    result, rep = report(tmp_path)
    assert result.exit_code == 0, result.output
    assert f"all {len(needed):,} LiDAR/camera keyframe files present" in result.output
    assert f"all {len(keyframes) - len(needed):,} other keyframe files present" in result.output

    gone = next(n for n in keyframes if "/CAM_FRONT/" in n)
    (data / "nuscenes" / gone).unlink()
    result, rep = report(tmp_path)
    assert result.exit_code == 1
    assert statuses(rep["findings"], "data/nuscenes", "samples") == ["error", "ok"]
    assert f"1 of {len(needed):,} LiDAR/camera keyframe files missing: samples/CAM_FRONT (1)" in result.output
    assert "blob archives" in result.output

    # radar keyframes and sweeps are not needed by create-infos: missing ones warn, the exit code stays 0
    (data / "nuscenes" / gone).touch()
    radar = next(n for n in keyframes if "/RADAR_" in n)
    (data / "nuscenes" / radar).unlink()
    result, rep = report(tmp_path, "--sweeps")
    sweeps = sum(not sd["is_key_frame"] for sd in tables["sample_data"])
    assert result.exit_code == 0
    assert statuses(rep["findings"], "data/nuscenes", "samples") == ["ok", "warn"]
    assert statuses(rep["findings"], "data/nuscenes", "sweeps") == ["warn"]
    assert f"{sweeps:,} of {sweeps:,} sweep files missing" in result.output


def test_root_path_and_canbus_pointing_one_level_off(tmp_path, make_tree):
    make_tree(tmp_path)
    result = run(tmp_path, "--root-path", "data", "--canbus", "data/can_bus", "--no-blobs")
    assert result.exit_code == 1
    assert "use --root-path data/nuscenes" in result.output
    assert "this is can_bus/ itself" in result.output and "use --canbus data" in result.output


def test_canbus_missing_is_an_error_and_blacklisted_scenes_are_expected(tmp_path, tables, make_tree):
    make_tree(tmp_path / "a", can_bus=False)
    (tmp_path / "a" / "data" / "can_bus").mkdir()
    result = run(tmp_path / "a", "--no-blobs")
    assert result.exit_code == 1
    names, n = [s["name"] for s in tables["scene"]], len(tables["scene"])
    assert f"0 of {n} scenes have CAN bus; {n} missing: {', '.join(sorted(names))}" in result.output

    # scene-0161 ff. are on the devkit's CAN bus blacklist
    renamed = [dict(scene, name=f"scene-{161 + i:04d}") for i, scene in enumerate(tables["scene"])]
    make_tree(tmp_path / "b", replace={"scene": renamed})
    result = run(tmp_path / "b", "--no-blobs")
    assert result.exit_code == 0, result.output
    assert f"0 of {n} scenes have CAN bus; {n} without it as expected" in result.output


def test_dangling_foreign_keys_are_named(tmp_path, tables, make_tree):
    sample_data = [dict(sd) for sd in tables["sample_data"]]
    sample_data[3]["ego_pose_token"] = "not-a-pose"
    annotations = [dict(a) for a in tables["sample_annotation"]]
    annotations[0]["attribute_tokens"] = annotations[0]["attribute_tokens"] + ["no-such-attribute"]
    make_tree(tmp_path, replace={"sample_data": sample_data, "sample_annotation": annotations})
    result, rep = report(tmp_path, "--no-blobs")
    assert result.exit_code == 1
    messages = [f["message"] for f in rep["findings"] if f["item"][-1] == "foreign keys"]
    assert messages == ["sample_data.ego_pose_token: 1 token(s) not in ego_pose.json (e.g. not-a-pose)",
                        "sample_annotation.attribute_tokens: 1 token(s) not in attribute.json (e.g. no-such-attribute)"]


@pytest.mark.parametrize("reading", ["whole", "batched", "parallel"])
def test_dangling_hex_tokens_are_named_exactly(tmp_path, tables, monkeypatch, reading, make_tree):
    """Well-formed 32-hex tokens take the packed (16-byte key) path: a token that differs from a real
    one in its last digit, a real token in upper case and a prev from another table all dangle,
    whether tables are decoded whole, in batches or (as big trainval files are) in worker processes."""
    if reading == "batched":
        monkeypatch.setattr(occprep.tables, "SPLIT_DECODE_BYTES", 0)
        monkeypatch.setattr(occprep.tables, "DECODE_BATCH", 7)
        monkeypatch.setattr(occprep.tables, "DECODE_BYTES", 5000)
    if reading == "parallel":
        monkeypatch.setattr(occprep.check, "PARALLEL_BYTES", 0)
        monkeypatch.setattr(occprep.check.os, "cpu_count", lambda: 2)
    sample_data = [dict(sd) for sd in tables["sample_data"]]
    pose = sample_data[3]["ego_pose_token"]
    sample_data[3]["ego_pose_token"] = pose[:-1] + ("0" if pose[-1] != "0" else "1")
    sample_data[5]["prev"] = tables["sample"][0]["token"]
    samples = [dict(s) for s in tables["sample"]]
    upper = samples[0]["next"].upper()
    samples[0]["next"] = upper
    make_tree(tmp_path, replace={"sample_data": sample_data, "sample": samples})
    result, rep = report(tmp_path, "--no-blobs")
    assert result.exit_code == 1
    messages = [f["message"] for f in rep["findings"] if f["item"][-1] == "foreign keys"]
    assert messages == [f"sample.next: 1 token(s) not in sample.json (e.g. {upper})",
                        f"sample_data.ego_pose_token: 1 token(s) not in ego_pose.json "
                        f"(e.g. {sample_data[3]['ego_pose_token']})",
                        f"sample_data.prev: 1 token(s) not in sample_data.json (e.g. {tables['sample'][0]['token']})"]


def test_every_foreign_key_resolves_in_the_real_tables(real_mini):
    tables = {name: real_mini.table(name) for name in TABLE_TYPES}
    tokens = {name: {r["token"] for r in records} for name, records in tables.items()}
    for fk in FOREIGN_KEYS:
        for record in tables[fk.table]:
            values = record[fk.field] if fk.many else [record[fk.field]]
            assert all(v in tokens[fk.target] or (fk.optional and v == "") for v in values), fk


def test_unparsable_and_missing_tables(tmp_path, make_tree):
    make_tree(tmp_path, replace={"log": "[{\"token\": 1"})
    (tmp_path / "data" / "nuscenes" / "v1.0-mini" / "visibility.json").unlink()
    result, rep = report(tmp_path, "--no-blobs")
    assert result.exit_code == 1
    by_item = {tuple(f["item"]): f for f in rep["findings"]}
    assert by_item[("data/nuscenes", "v1.0-mini", "log.json")]["message"].startswith("does not parse")
    assert by_item[("data/nuscenes", "v1.0-mini", "visibility.json")]["message"] == "missing"
    assert not any(f["item"][-1] == "foreign keys" for f in rep["findings"])


def test_a_big_table_damaged_in_a_worker_process_is_named(tmp_path, tables, monkeypatch, make_tree):
    monkeypatch.setattr(occprep.check, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(occprep.check.os, "cpu_count", lambda: 2)
    make_tree(tmp_path, replace={"sample_data": json.dumps(tables["sample_data"])[:-40]})
    result, rep = report(tmp_path, "--no-blobs")
    assert result.exit_code == 1
    by_item = {tuple(f["item"]): f for f in rep["findings"]}
    assert by_item[("data/nuscenes", "v1.0-mini", "sample_data.json")]["message"].startswith(
        "does not parse: data/nuscenes/v1.0-mini/sample_data.json: malformed JSON")
    assert by_item[("data/nuscenes", "v1.0-mini", "ego_pose.json")]["status"] == "ok"


def test_requested_version_missing_names_the_metadata_archive(tmp_path, make_tree):
    make_tree(tmp_path)
    result = run(tmp_path, "--version", "v1.0", "--no-blobs")
    assert result.exit_code == 1
    assert "v1.0-trainval/ comes from the metadata archive (v1.0-trainval_meta.tgz)" in result.output
    assert "v1.0-test/ comes from the metadata archive (v1.0-test_meta.tgz)" in result.output


def test_occ3d_and_openocc_coverage(tmp_path, generated_mini, make_tree):
    by_split = {split: generated_mini.split_samples(split) for split in ("train", "val")}
    count = {split: sum(map(len, scenes.values())) for split, scenes in by_split.items()}
    make_tree(tmp_path / "occ3d")
    gts = tmp_path / "occ3d" / "data" / "nuscenes" / "gts"
    for scenes in by_split.values():
        for scene, tokens in scenes.items():
            for token in tokens:
                (gts / scene / token).mkdir(parents=True)
                np.savez_compressed(gts / scene / token / "labels.npz", semantics=np.zeros((2, 2, 2), np.uint8))
    val_scene, val_tokens = next(iter(by_split["val"].items()))
    (gts / val_scene / val_tokens[0] / "labels.npz").unlink()  # its folder stays, empty
    result = run(tmp_path / "occ3d", "--no-blobs")
    assert result.exit_code == 0, result.output
    assert f"mini_train: Occ3D release: {count['train']} of {count['train']} samples have ground truth" in result.output
    assert f"mini_val: Occ3D release: {count['val'] - 1} of {count['val']} samples have ground truth" in result.output
    assert "[warn]" in result.output

    make_tree(tmp_path / "openocc")
    occ_root = tmp_path / "openocc" / "data" / "occ_gt_release_v1_0"
    occ_root.mkdir()
    entry = {"occ_gt_path": "a.npy", "flow_gt_path": "b.npy", "occ_invalid_path": "c.npy"}
    for split, scenes in by_split.items():
        index = {scene: {t: entry for t in tokens} for scene, tokens in scenes.items()}
        (occ_root / f"occ_gt_{split}.json").write_bytes(msgspec.json.encode(index))
    result = run(tmp_path / "openocc", "--no-blobs")
    for split, n in count.items():  # the index names them, but the files are not there
        assert f"occ_gt_{split}.json (mini_{split}): OpenOcc v1 index and files: 0 of {n} samples" in result.output
    for name in entry.values():
        (occ_root / name).write_bytes(b"")
    result = run(tmp_path / "openocc", "--no-blobs")
    assert result.exit_code == 0, result.output
    for split, n in count.items():
        assert f"occ_gt_{split}.json (mini_{split}): OpenOcc v1 index and files: {n} of {n} samples" in result.output

    result = run(tmp_path / "openocc", "--no-blobs", "--occ-root", "nowhere")
    assert result.exit_code == 1 and "--occ-root must name" in result.output


def test_quiet_prints_only_problems(tmp_path, make_tree):
    make_tree(tmp_path)
    assert run(tmp_path, "--no-blobs", "--quiet").output == ""
    output = run(tmp_path, "--quiet").output
    assert "samples" in output and "[ok]" not in output.replace("[ERROR] data/nuscenes", "")


def test_render_tree_accepts_findings_of_any_validator():
    findings = [
        Finding(("unity", "sequence.0", "step0.frame_data.json"), "ok", "parsed"),
        Finding(("unity", "sequence.0", "ego"), "skip", "not checked"),
        Finding(("unity", "sequence.1"), "warn", "no annotations", "add a bounding box labeler"),
    ]
    assert render_tree(findings) == [
        "[warn]  unity",
        "[ok]      sequence.0",
        "[ok]        step0.frame_data.json: parsed",
        "[skip]      ego: not checked",
        "[warn]    sequence.1: no annotations",
        "            fix: add a bounding box labeler",
    ]
    assert passed(findings) and not passed(findings + [Finding(("x",), "error", "broken")])


def test_synthetic_tree_with_blobs_sweeps_and_occ3d(tmp_path):
    result = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path / "data"), "--scenes", "2",
                                      "--samples-per-scene", "4", "--blobs", "empty", "--occ", "occ3d", "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    result, rep = report(tmp_path, "--sweeps")
    assert result.exit_code == 0, result.output
    assert rep["counts"]["warn"] == rep["counts"]["error"] == 0
    assert "mini_train: Occ3D release: 4 of 4 samples have ground truth" in result.output
    assert "mini_val: Occ3D release: 4 of 4 samples have ground truth" in result.output

    sweep = next((tmp_path / "data" / "nuscenes" / "sweeps" / "LIDAR_TOP").iterdir())
    sweep.unlink()
    labels = next((tmp_path / "data" / "nuscenes" / "gts").glob("*/*/labels.npz"))
    labels.unlink()
    result, rep = report(tmp_path, "--sweeps")
    assert result.exit_code == 0
    assert rep["counts"]["warn"] == 2
    assert "1 of" in result.output and "sweep files missing: sweeps/LIDAR_TOP (1)" in result.output
    assert "Occ3D release: 3 of 4 samples have ground truth (1 without" in result.output
