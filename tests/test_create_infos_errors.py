"""create-infos: bad input is a one-line error with a non-zero exit and nothing written; versions.
On copies of a generated v1.0-mini."""

import errno
import json
import os
import re
import shutil

import pytest

from occprep.pickles import load_pickle
from helpers import digest, digests, run_cli

BASE_ARGS = ["create-infos", "--version", "v1.0-mini", "--no-file-check", "--out-dir", "out"]


@pytest.fixture
def dataset(writable_mini, tmp_path, monkeypatch):
    """The root of a writable copy of the generated mini at tmp_path/data/nuscenes; tmp_path is the current folder."""
    monkeypatch.chdir(tmp_path)
    return writable_mini.root


def assert_one_line_error(code, err, *fragments):
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert code != 0
    assert last.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in last


def edit_table(root, name, edit):
    path = root / "v1.0-mini" / f"{name}.json"
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))


@pytest.mark.parametrize("args, fragments", [
    (["--root-path", "nowhere"], ["nowhere: folder not found"]),
    (["--version", "v1.0-trainval"], ["--version v1.0-trainval: no folder"]),
    (["--version", "v2.0"], ["--version v2.0 (did you mean v1.0?): unknown version"]),
    (["--version", "v1.0"], ["--version v1.0: none of v1.0-trainval, v1.0-test"]),
    (["--canbus", "elsewhere"], ["--canbus elsewhere is not where can_bus/ is (data holds it): use --canbus data"]),
    (["--config", "nosuch"], ["unknown config nosuch: give a JSON file or one of nuscenes"]),
])
def test_bad_flags(dataset, monkeypatch, capsys, args, fragments):
    code, _, err = run_cli(BASE_ARGS + args, monkeypatch, capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (dataset.parent.parent / "out").exists()


def test_missing_table(dataset, monkeypatch, capsys):
    (dataset / "v1.0-mini" / "visibility.json").unlink()
    code, _, err = run_cli(BASE_ARGS, monkeypatch, capsys)
    assert_one_line_error(code, err, "visibility.json: file not found")


def test_malformed_json_names_file_and_position(dataset, monkeypatch, capsys):
    path = dataset / "v1.0-mini" / "scene.json"
    path.write_text(path.read_text().replace("{", "{@", 2))
    code, _, err = run_cli(BASE_ARGS, monkeypatch, capsys)
    assert_one_line_error(code, err, "scene.json: malformed JSON", "(byte ")



def test_empty_table_file_is_malformed_json(dataset, monkeypatch, capsys):
    """An empty file cannot be mapped: it is read instead, and named as malformed."""
    (dataset / "v1.0-mini" / "scene.json").write_bytes(b"")
    code, _, err = run_cli(BASE_ARGS, monkeypatch, capsys)
    assert_one_line_error(code, err, "scene.json: malformed JSON")


def test_table_path_that_is_a_folder_cannot_be_read(dataset, monkeypatch, capsys):
    (dataset / "v1.0-mini" / "visibility.json").unlink()
    (dataset / "v1.0-mini" / "visibility.json").mkdir()
    code, _, err = run_cli(BASE_ARGS, monkeypatch, capsys)
    assert_one_line_error(code, err, "visibility.json: cannot read (Is a directory)")

@pytest.mark.parametrize("table, field, message", [
    ("sample_data", "ego_pose_token", "sample_data.ego_pose_token 'deadbeef'"),
    ("sample_data", "calibrated_sensor_token", "sample_data.calibrated_sensor_token 'deadbeef'"),
    ("sample_annotation", "instance_token", "sample_annotation.instance_token 'deadbeef'"),
    ("sample", "scene_token", "sample.scene_token 'deadbeef'"),
])
def test_unresolved_token_names_table_field_and_token(dataset, monkeypatch, capsys, table, field, message):
    def corrupt(records):
        target = next(r for r in records if table != "sample_data" or r["filename"].startswith("samples/LIDAR_TOP"))
        target[field] = "deadbeef"

    edit_table(dataset, table, corrupt)
    code, _, err = run_cli(BASE_ARGS, monkeypatch, capsys)
    assert_one_line_error(code, err, message, "does not resolve")


def test_failed_run_keeps_older_outputs(dataset, monkeypatch, capsys):
    code, _, err = run_cli(BASE_ARGS + ["--quiet"], monkeypatch, capsys)
    assert code == 0, err
    old = digest(dataset.parent.parent / "out" / "nuscenes_infos_temporal_val.pkl")
    (dataset / "v1.0-mini" / "ego_pose.json").write_text("[")
    code, _, err = run_cli(BASE_ARGS, monkeypatch, capsys)
    assert_one_line_error(code, err, "ego_pose.json: malformed JSON")
    assert digest(dataset.parent.parent / "out" / "nuscenes_infos_temporal_val.pkl") == old


def test_umbrella_version_runs_the_folders_present(dataset, monkeypatch, capsys):
    scenes = [s["name"] for s in json.loads((dataset / "v1.0-mini" / "scene.json").read_text())]
    samples = len(json.loads((dataset / "v1.0-mini" / "sample.json").read_text()))
    shutil.move(dataset / "v1.0-mini", dataset / "v1.0-test")
    code, _, err = run_cli(["create-infos", "--version", "v1.0", "--no-file-check", "--out-dir", "out",
                            "--extra-tag", "t"], monkeypatch, capsys)
    assert code == 0, err
    assert "v1.0-trainval: no folder" in err and "skipped" in err
    assert f"scene(s) in no split list (went to test): {', '.join(scenes)}" in err
    data = load_pickle(dataset.parent.parent / "out" / "t_infos_temporal_test.pkl")
    assert data["metadata"] == {"version": "v1.0-test"} and len(data["infos"]) == samples
    assert "gt_boxes" not in data["infos"][0] and list(data["infos"][0])[-1] == "timestamp"
    assert sorted(p.name for p in (dataset.parent.parent / "out").iterdir()) == ["t_infos_temporal_test.pkl"]


def test_a_file_the_disk_cannot_take_is_named_and_older_outputs_stay(dataset, monkeypatch, capsys):
    """Files are synced to disk in the background while the next is built: a failed sync (an I/O error,
    a full quota on a network disk) still ends the run with the file named, and nothing replaced."""
    code, _, err = run_cli(BASE_ARGS + ["--quiet"], monkeypatch, capsys)
    assert code == 0, err
    out = dataset.parent.parent / "out"
    old = digests(out)

    def failing(descriptor):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing)
    code, _, err = run_cli(BASE_ARGS + ["--quiet"], monkeypatch, capsys)
    assert_one_line_error(code, err, "cannot write (Input/output error); check --out-dir")
    assert re.search(r"error: out/nuscenes_infos_temporal_(train|val)\.pkl: cannot write", err), err
    assert digests(out) == old
