"""`occprep check` on the real mini scene laid out as the seed documents, and on broken copies of it."""

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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MINI = SHARED / "nuscenes-mini-scene-0916"
pytestmark = pytest.mark.skipif(not MINI.is_dir(), reason=f"shared data not found at {MINI}")


def _tables() -> dict:
    return {name: json.loads((MINI / "v1.0-mini" / f"{name}.json").read_text()) for name in TABLE_TYPES}


@pytest.fixture(scope="module")
def tables() -> dict:
    return _tables()


def make_tree(base: Path, replace: dict = None, can_bus: bool = True) -> Path:
    """data/nuscenes (tables linked from the shared scene, `replace` written instead) and data/can_bus."""
    version = base / "data" / "nuscenes" / "v1.0-mini"
    version.mkdir(parents=True)
    for name in TABLE_TYPES:
        target = version / f"{name}.json"
        if replace and name in replace:
            content = replace[name]
            target.write_text(content if isinstance(content, str) else json.dumps(content))
        else:
            target.symlink_to(MINI / "v1.0-mini" / f"{name}.json")
    (base / "data" / "nuscenes" / "maps").symlink_to(MINI / "maps")
    if can_bus:
        (base / "data" / "can_bus").symlink_to(MINI / "can_bus")
    return base / "data"


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


def test_shared_layout_is_ready(tmp_path, tables):
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
    assert by_item[("data/can_bus",)]["message"].startswith("1 of 1 scenes have CAN bus")
    assert "[ok]      v1.0-mini" in result.output


def test_blobs_all_present_then_one_missing(tmp_path, tables):
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


def test_root_path_and_canbus_pointing_one_level_off(tmp_path):
    make_tree(tmp_path)
    result = run(tmp_path, "--root-path", "data", "--canbus", "data/can_bus", "--no-blobs")
    assert result.exit_code == 1
    assert "use --root-path data/nuscenes" in result.output
    assert "--canbus must name the folder that contains can_bus/: use --canbus data" in result.output


def test_canbus_missing_is_an_error_and_blacklisted_scenes_are_expected(tmp_path, tables):
    make_tree(tmp_path / "a", can_bus=False)
    (tmp_path / "a" / "data" / "can_bus").mkdir()
    result = run(tmp_path / "a", "--no-blobs")
    assert result.exit_code == 1
    assert "0 of 1 scenes have CAN bus; 1 missing: scene-0916" in result.output

    renamed = [dict(tables["scene"][0], name="scene-0161")]
    make_tree(tmp_path / "b", replace={"scene": renamed})
    result = run(tmp_path / "b", "--no-blobs")
    assert result.exit_code == 0, result.output
    assert "0 of 1 scenes have CAN bus; 1 without it as expected" in result.output


def test_dangling_foreign_keys_are_named(tmp_path, tables):
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
def test_dangling_hex_tokens_are_named_exactly(tmp_path, tables, monkeypatch, reading):
    """Well-formed 32-hex tokens take the packed (16-byte key) path: a token that differs from a real
    one in its last digit, a real token in upper case and a prev from another table all dangle,
    whether tables are decoded whole, in batches or (as big trainval files are) in worker processes."""
    if reading == "batched":
        monkeypatch.setattr(occprep.tables, "SPLIT_DECODE_BYTES", 0)
        monkeypatch.setattr(occprep.tables, "DECODE_BATCH", 7)
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


def test_every_foreign_key_resolves_in_the_real_tables(tables):
    tokens = {name: {r["token"] for r in records} for name, records in tables.items()}
    for fk in FOREIGN_KEYS:
        for record in tables[fk.table]:
            values = record[fk.field] if fk.many else [record[fk.field]]
            assert all(v in tokens[fk.target] or (fk.optional and v == "") for v in values), fk


def test_unparsable_and_missing_tables(tmp_path):
    make_tree(tmp_path, replace={"log": "[{\"token\": 1"})
    (tmp_path / "data" / "nuscenes" / "v1.0-mini" / "visibility.json").unlink()
    result, rep = report(tmp_path, "--no-blobs")
    assert result.exit_code == 1
    by_item = {tuple(f["item"]): f for f in rep["findings"]}
    assert by_item[("data/nuscenes", "v1.0-mini", "log.json")]["message"].startswith("does not parse")
    assert by_item[("data/nuscenes", "v1.0-mini", "visibility.json")]["message"] == "missing"
    assert not any(f["item"][-1] == "foreign keys" for f in rep["findings"])


def test_a_big_table_damaged_in_a_worker_process_is_named(tmp_path, tables, monkeypatch):
    monkeypatch.setattr(occprep.check, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(occprep.check.os, "cpu_count", lambda: 2)
    make_tree(tmp_path, replace={"sample_data": json.dumps(tables["sample_data"])[:-40]})
    result, rep = report(tmp_path, "--no-blobs")
    assert result.exit_code == 1
    by_item = {tuple(f["item"]): f for f in rep["findings"]}
    assert by_item[("data/nuscenes", "v1.0-mini", "sample_data.json")]["message"].startswith(
        "does not parse: data/nuscenes/v1.0-mini/sample_data.json: malformed JSON")
    assert by_item[("data/nuscenes", "v1.0-mini", "ego_pose.json")]["status"] == "ok"


def test_requested_version_missing_names_the_metadata_archive(tmp_path):
    make_tree(tmp_path)
    result = run(tmp_path, "--version", "v1.0", "--no-blobs")
    assert result.exit_code == 1
    assert "v1.0-trainval/ comes from the metadata archive (v1.0-trainval_meta.tgz)" in result.output
    assert "v1.0-test/ comes from the metadata archive (v1.0-test_meta.tgz)" in result.output


def test_occ3d_and_openocc_coverage(tmp_path, tables):
    tokens = sorted(s["token"] for s in tables["sample"])
    make_tree(tmp_path / "occ3d")
    gts = tmp_path / "occ3d" / "data" / "nuscenes" / "gts" / "scene-0916"
    for token in tokens[1:]:
        (gts / token).mkdir(parents=True)
        np.savez_compressed(gts / token / "labels.npz", semantics=np.zeros((2, 2, 2), np.uint8))
    (gts / tokens[0]).mkdir()
    result = run(tmp_path / "occ3d", "--no-blobs")
    assert result.exit_code == 0, result.output
    assert f"Occ3D labels.npz: {len(tokens) - 1} of {len(tokens)} samples have ground truth" in result.output
    assert "[warn]" in result.output

    make_tree(tmp_path / "openocc")
    occ_root = tmp_path / "openocc" / "data" / "occ_gt_release_v1_0"
    occ_root.mkdir()
    entry = {"occ_gt_path": "a.npy", "flow_gt_path": "b.npy", "occ_invalid_path": "c.npy"}
    (occ_root / "occ_gt_val.json").write_bytes(msgspec.json.encode({"scene-0916": {t: entry for t in tokens}}))
    result = run(tmp_path / "openocc", "--no-blobs")
    assert result.exit_code == 0, result.output
    assert f"occ_gt_val.json (mini_val): OpenOcc v1 index: {len(tokens)} of {len(tokens)} samples" in result.output

    result = run(tmp_path / "openocc", "--no-blobs", "--occ-root", "nowhere")
    assert result.exit_code == 1 and "--occ-root must name" in result.output


def test_quiet_prints_only_problems(tmp_path):
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
    assert "mini_train: Occ3D labels.npz: 4 of 4 samples have ground truth" in result.output
    assert "mini_val: Occ3D labels.npz: 4 of 4 samples have ground truth" in result.output

    sweep = next((tmp_path / "data" / "nuscenes" / "sweeps" / "LIDAR_TOP").iterdir())
    sweep.unlink()
    labels = next((tmp_path / "data" / "nuscenes" / "gts").glob("*/*/labels.npz"))
    labels.unlink()
    result, rep = report(tmp_path, "--sweeps")
    assert result.exit_code == 0
    assert rep["counts"]["warn"] == 2
    assert "1 of" in result.output and "sweep files missing: sweeps/LIDAR_TOP (1)" in result.output
    assert "Occ3D labels.npz: 3 of 4 samples have ground truth (1 without" in result.output
