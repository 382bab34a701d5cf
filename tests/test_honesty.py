"""Honest outputs and messages: no empty output written because of a problem, every name the user
gives checked against the data, every usual path mix-up named with the corrected flag, and the three
shared cases (/work/shared/cases/*) reproduced on generated data.

Every run goes through the console entry point (`run_cli`) from a folder laid out as the docs say
(data/nuscenes, data/can_bus, data/occ_gt_release_v1_0), so flags are spelled as a user types them.
Datasets are generated (a fresh clone passes on its own) and tiny: 4 keyframes per scene.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict

import pytest

import occprep.synth.scenes as synth_scenes
from helpers import create_infos_in, digests, run_cli
from occprep.pickles import dump_pickle, load_pickle
from occprep.synth import synthesize
from occprep.unity import fake

SAMPLES = 4
"""Keyframes per generated scene."""
INFOS = "nuscenes_infos_temporal_{}.pkl"
"""create-infos' BEVFormer file name of a split (default --extra-tag)."""
CREATE = ["create-infos", "-q", "--version", "v1.0-mini"]


# ----------------------------------------------------------------------------- helpers


def assert_error(code, err: str, *fragments: str) -> str:
    """Exit code 2, stderr exactly one line starting 'error: ' (no traceback) holding every fragment."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(folder: Path) -> Dict[str, str]:
    """Relative path -> digest of every file under `folder` (empty when it does not exist)."""
    return digests(folder)


def infos_of(path: Path) -> list:
    return load_pickle(path)["infos"]


def keyframe_files(root: Path, scene: str, version: str = "v1.0-mini") -> list:
    """The keyframe sample_data filenames of `scene` in the tables under `root`."""
    def table(name):
        return json.loads((root / version / f"{name}.json").read_text())

    scene_token = next(s["token"] for s in table("scene") if s["name"] == scene)
    samples = {s["token"] for s in table("sample") if s["scene_token"] == scene_token}
    return [d["filename"] for d in table("sample_data") if d["is_key_frame"] and d["sample_token"] in samples]


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


# ----------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def occ_base(tmp_path_factory) -> Path:
    """base/data: a generated v1.0-mini of scene-0061 (train) and scene-0103 (val) with empty sensor
    files, CAN bus, OpenOcc v1 and Occ3D ground truth; base/infos: its create-infos pickles.
    Shared by the module: read-only (tests write under their own tmp_path)."""
    base = tmp_path_factory.mktemp("occ")
    synthesize(base / "data", "v1.0-mini", scenes=2, samples_per_scene=SAMPLES, occ=("openocc-v1", "occ3d"),
               blobs="empty")
    create_infos_in(base, "--out-dir", "infos")
    return base


@pytest.fixture
def at_occ(occ_base, monkeypatch) -> Path:
    """The current folder is `occ_base` (data/ and infos/ in it)."""
    monkeypatch.chdir(occ_base)
    return occ_base


@pytest.fixture
def blobs_mini(tmp_path, monkeypatch) -> Path:
    """A writable generated v1.0-mini (scene-0061 and scene-0553 in train, scene-0103 in val) with empty
    sensor files at tmp_path/data/nuscenes, CAN bus in tmp_path/data; tmp_path is the current folder."""
    synthesize(tmp_path / "data", "v1.0-mini", scenes=3, samples_per_scene=SAMPLES, occ=(), blobs="empty")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data" / "nuscenes"


@pytest.fixture
def mini_0916(tmp_path, monkeypatch) -> Path:
    """The shared cases' data, generated: v1.0-mini tables of scene-0916 alone (a mini_val scene), maps
    and CAN bus, no sensor files, at tmp_path/data/nuscenes; tmp_path is the current folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synth_scenes, "official_scenes", lambda version: [synth_scenes.ScenePlan("scene-0916", "val")])
        synthesize(tmp_path / "data", "v1.0-mini", samples_per_scene=SAMPLES, occ=(), blobs="none")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data" / "nuscenes"


@pytest.fixture(scope="module")
def unity_base(tmp_path_factory) -> Path:
    """base/solo: a generated SOLO run (2 sequences of 3 steps, one camera 'camera', labels Car,
    Pedestrian, Crate, with images); base/empty: a SOLO run whose sequence.0/ holds no frame. Read-only."""
    base = tmp_path_factory.mktemp("unity")
    fake.write_solo(base / "solo", n_sequences=2, n_steps=3, images=True)
    fake.write_solo(base / "empty", n_sequences=1, n_steps=0)
    (base / "empty" / "sequence.0").mkdir()
    return base


@pytest.fixture
def at_unity(unity_base, monkeypatch) -> Path:
    monkeypatch.chdir(unity_base)
    return unity_base


# ----------------------------------------------------------------------------- 1. empty outputs: create-infos


class TestEmptyInfos:
    """create-infos never writes a split empty because of a problem; a split no scene belongs to is
    written and explained."""

    def test_no_sensor_files_at_all_names_the_fixes_and_keeps_older_pickles(self, blobs_mini, monkeypatch, capsys):
        """Every keyframe file missing: 'no sensor files at all', --root-path / extract / --no-file-check."""
        code, _, err = run_cli(CREATE, monkeypatch, capsys)
        assert code == 0, err
        before = snapshot(blobs_mini)
        shutil.rmtree(blobs_mini / "samples")
        shutil.rmtree(blobs_mini / "sweeps")
        before = {k: v for k, v in before.items() if not k.startswith(("samples/", "sweeps/"))}
        code, _, err = run_cli(CREATE, monkeypatch, capsys)
        assert_error(code, err, "v1.0-mini: none of the", "keyframe LiDAR/camera files exists under ./data/nuscenes",
                     "the root holds no sensor files at all", "extract the blob archives (samples/, sweeps/) into "
                     "./data/nuscenes", "--root-path", "--no-file-check")
        assert snapshot(blobs_mini) == before

    def test_sensor_folders_beside_the_root_give_the_mv_command(self, blobs_mini, monkeypatch, capsys):
        """samples/ and sweeps/ extracted into data/ instead of data/nuscenes/: the exact `mv`."""
        for name in ("samples", "sweeps"):
            shutil.move(blobs_mini / name, blobs_mini.parent / name)
        code, _, err = run_cli(CREATE + ["--root-path", "data/nuscenes", "--out-dir", "out"], monkeypatch, capsys)
        assert_error(code, err, "the root holds no sensor files at all",
                     "(mv data/samples data/sweeps data/nuscenes/)", "--no-file-check")
        assert not Path("out").exists()

    def test_split_whose_scenes_were_all_left_out_is_an_error(self, blobs_mini, monkeypatch, capsys):
        """val's one scene misses a keyframe file: error naming val and the cause; older pickles unchanged."""
        code, _, err = run_cli(CREATE, monkeypatch, capsys)
        assert code == 0, err
        before = snapshot(blobs_mini)
        missing = next(f for f in keyframe_files(blobs_mini, "scene-0103") if "CAM_BACK/" in f)
        (blobs_mini / missing).unlink()
        code, _, err = run_cli(CREATE, monkeypatch, capsys)
        assert_error(code, err, "v1.0-mini val: every one of its 1 scene(s) was left out", "scene-0103",
                     f"keyframe file(s) missing under ./data/nuscenes, e.g. {missing}", "nothing written")
        del before[missing]
        assert snapshot(blobs_mini) == before

    def test_split_keeping_some_scenes_is_written_and_names_the_left_out(self, blobs_mini, monkeypatch, capsys):
        """One of train's two scenes left out: train written with the other, the summary names it."""
        missing = keyframe_files(blobs_mini, "scene-0553")[0]
        (blobs_mini / missing).unlink()
        code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--out-dir", "out"], monkeypatch, capsys)
        assert code == 0, err
        assert "1 scene(s) left out:" in err and "scene-0553: 1 keyframe file(s) missing" in err
        assert len(infos_of(Path("out") / INFOS.format("train"))) == SAMPLES
        assert len(infos_of(Path("out") / INFOS.format("val"))) == SAMPLES

    def test_split_no_scene_belongs_to_is_written_and_explained(self, mini_0916, monkeypatch, capsys):
        """train on a one-val-scene mini: written, and the summary and --report say why it is empty."""
        code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--no-file-check", "--out-dir", "out",
                                "--report", "report.json"], monkeypatch, capsys)
        assert code == 0, err
        why = "no scene of these tables belongs to it (nuscenes-devkit's official scene lists: list 'mini_train')"
        assert f"train is empty: {why}" in err
        report = json.loads(Path("report.json").read_text())
        assert report["versions"][0]["empty_splits"] == {"train": why}
        assert infos_of(Path("out") / INFOS.format("train")) == []
        assert len(infos_of(Path("out") / INFOS.format("val"))) == SAMPLES


# ----------------------------------------------------------------------------- 1. empty outputs: merge-occ


def merge_args(infos_dir, out_dir, fmt="openocc-v1", *more):
    occ_root = "data/occ_gt_release_v1_0" if fmt == "openocc-v1" else "data/nuscenes"
    return ["merge-occ", "-q", "--infos-dir", str(infos_dir), "--occ-root", occ_root, "--format", fmt,
            "--out-dir", str(out_dir), *more]


def unmatch(path: Path, count=None) -> None:
    """Reverse the sample tokens of the first `count` infos (all: None) so the release has none of them."""
    data = load_pickle(path)
    for info in data["infos"][:count]:
        info["token"] = info["token"][::-1]
    dump_pickle(data, path)


class TestEmptyMerge:
    """merge-occ never writes a split none of whose infos has ground truth, --allow-missing or not."""

    @pytest.fixture
    def infos(self, at_occ, tmp_path) -> Path:
        """A writable copy of the occ dataset's infos."""
        shutil.copytree(at_occ / "infos", tmp_path / "infos")
        return tmp_path / "infos"

    @pytest.mark.parametrize("fmt, source", [("openocc-v1", "data/occ_gt_release_v1_0/occ_gt_val.json"),
                                             ("occ3d", "data/nuscenes/gts")])
    @pytest.mark.parametrize("allow_missing", [False, True])
    def test_split_without_any_ground_truth_is_an_error(self, infos, tmp_path, monkeypatch, capsys, fmt, source,
                                                        allow_missing):
        """val's infos all unknown to the release: error naming val and the cause; older outputs unchanged."""
        out = tmp_path / "merged"
        code, _, err = run_cli(merge_args(infos, out, fmt), monkeypatch, capsys)
        assert code == 0, err
        before = snapshot(out)
        assert len(before) == 2
        unmatch(infos / INFOS.format("val"))
        more = ["--allow-missing"] if allow_missing else []
        code, _, err = run_cli(merge_args(infos, out, fmt, "--report", str(tmp_path / "r.json"), *more),
                               monkeypatch, capsys)
        assert_error(code, err, f"val: none of its {SAMPLES} infos has an entry in {source}",
                     "so its merged pickle would be empty; nothing written")
        assert snapshot(out) == before
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["written"] is False and report["splits"]["val"]["with_gt"] == 0

    def test_allow_missing_writes_a_split_that_keeps_some_ground_truth(self, infos, tmp_path, monkeypatch, capsys):
        """One train info unknown: an error without --allow-missing; with it, train is written without it."""
        unmatch(infos / INFOS.format("train"), count=1)
        out = tmp_path / "merged"
        code, _, err = run_cli(merge_args(infos, out), monkeypatch, capsys)
        assert_error(code, err, f"1 of {SAMPLES} infos have no entry", "pass --allow-missing")
        assert not out.exists()
        code, _, err = run_cli(merge_args(infos, out, "openocc-v1", "--allow-missing"), monkeypatch, capsys)
        assert code == 0, err
        assert len(infos_of(out / "nuscenes_infos_temporal_train_occ_gt.pkl")) == SAMPLES - 1


# ----------------------------------------------------------------------------- 1. empty outputs: Unity


class TestEmptyUnity:
    """A Unity dataset of which no frame is read is an error, and older outputs stay."""

    def test_create_infos_without_frames_keeps_older_pickles(self, at_unity, tmp_path, monkeypatch, capsys):
        out = tmp_path / "out"
        code, _, err = run_cli(["create-infos", "-q", "--root-path", "solo", "--out-dir", out], monkeypatch, capsys)
        assert code == 0, err
        before = snapshot(out)
        assert list(before) == [INFOS.format("train")]
        code, _, err = run_cli(["create-infos", "-q", "--root-path", "empty", "--out-dir", out], monkeypatch, capsys)
        assert_error(code, err, "no camera captures found")
        assert snapshot(out) == before

    def test_export_without_frames_keeps_older_tables(self, at_unity, tmp_path, monkeypatch, capsys):
        out = tmp_path / "exported"
        code, _, err = run_cli(["export-nuscenes", "-q", "--root-path", "solo", "--out", out], monkeypatch, capsys)
        assert code == 0, err
        before = snapshot(out)
        assert "v1.0-trainval/scene.json" in before
        code, _, err = run_cli(["export-nuscenes", "-q", "--root-path", "empty", "--out", out], monkeypatch, capsys)
        assert_error(code, err, "no camera captures found")
        assert snapshot(out) == before


# ----------------------------------------------------------------------------- 2. names checked against the data


class TestNames:
    """Every flag or config file that names records: an unknown name is a one-line error listing it
    with the closest existing ones, and nothing is written."""

    def test_splits_file_scene_typo(self, at_occ, tmp_path, monkeypatch, capsys):
        splits = write_json(tmp_path / "splits.json", {"train": ["scene-61"], "val": ["scene-0103"]})
        code, _, err = run_cli(CREATE + ["--no-file-check", "--splits", splits, "--out-dir", tmp_path / "out"],
                               monkeypatch, capsys)
        assert_error(code, err, f"{splits}: 1 scene(s) not in the data: scene-61 (did you mean scene-0061?)")
        assert not (tmp_path / "out").exists()

    def test_synth_without_can_bus_typo(self, tmp_path, monkeypatch, capsys):
        out = tmp_path / "synth"
        code, _, err = run_cli(["synth", "-q", "--out", out, "--scenes", "2", "--samples-per-scene", "2",
                                "--without-can-bus", "scene-61"], monkeypatch, capsys)
        assert_error(code, err, "--without-can-bus scene-61: 1 scene(s) not in the data: "
                                "scene-61 (did you mean scene-0061?)")
        assert not out.exists()

    def test_show_token_typo(self, at_occ, tmp_path, monkeypatch, capsys):
        pkl = Path("infos") / INFOS.format("val")
        token = infos_of(pkl)[1]["token"]
        png = tmp_path / "sample.png"
        code, _, err = run_cli(["show", "-q", pkl, "--token", token[:-1], "--out", png], monkeypatch, capsys)
        assert_error(code, err, f"--token {token[:-1]}: 1 sample token(s) not in the data: "
                                f"{token[:-1]} (did you mean {token}?)")
        assert not png.exists()

    @pytest.mark.parametrize("edit, fragments", [
        (lambda c: c.update(lidar_channel="LIDAR_TOPP", camera_channels=["CAM_FRNT", *c["camera_channels"][1:]]),
         ["2 sensor channel(s) not in the data: LIDAR_TOPP (did you mean LIDAR_TOP?), CAM_FRNT (did you mean "
          "CAM_FRONT", "fix lidar_channel / camera_channels"]),
        (lambda c: c["detection_names"].update({"vehicle.carr": "car"}),
         ["detection_names: 1 category(s) not in the data: vehicle.carr (did you mean vehicle.car"]),
    ], ids=["channels", "detection_names"])
    def test_config_names_not_in_tables(self, at_occ, tmp_path, monkeypatch, capsys, edit, fragments):
        config = json.loads((Path(__file__).parents[1] / "configs" / "dataset-nuscenes.json").read_text())
        edit(config)
        path = write_json(tmp_path / "config.json", config)
        code, _, err = run_cli(CREATE + ["--no-file-check", "--config", path, "--out-dir", tmp_path / "out"],
                               monkeypatch, capsys)
        assert_error(code, err, f"--config {path}", *fragments)
        assert not (tmp_path / "out").exists()

    def test_check_config_names_not_in_tables(self, at_occ, tmp_path, monkeypatch, capsys):
        config = json.loads((Path(__file__).parents[1] / "configs" / "dataset-nuscenes.json").read_text())
        config["camera_channels"][0] = "CAM_FRNT"
        path = write_json(tmp_path / "config.json", config)
        code, out, err = run_cli(["check", "-q", "--config", path], monkeypatch, capsys)
        assert code != 0
        assert "CAM_FRNT" in out + err and "CAM_FRONT" in out + err

    @pytest.mark.parametrize("command", ["create-infos", "export-nuscenes"])
    @pytest.mark.parametrize("config, fragment", [
        ({"labels": {"Carr": "vehicle.car", "Car": "vehicle.car"}},
         "\"labels\": 1 label(s) not in the data: Carr (did you mean Car?); the dataset's labels are Car, Crate, "
         "Pedestrian"),
        ({"cameras": {"camera": "CAM_FRONT", "camra_back": "CAM_BACK"}},
         "\"cameras\": 1 camera sensor id(s) not in the data: camra_back (did you mean camera?)"),
    ], ids=["labels", "cameras"])
    def test_unity_config_names_not_in_dataset(self, at_unity, tmp_path, monkeypatch, capsys, command, config,
                                               fragment):
        path = write_json(tmp_path / "unity.json", {"name": "typo", **config})
        out = tmp_path / "out"
        code, _, err = run_cli([command, "-q", "--root-path", "solo", "--unity-config", path,
                                "--out-dir" if command == "create-infos" else "--out", out], monkeypatch, capsys)
        assert_error(code, err, f"--unity-config typo {fragment}")
        assert not out.exists()

    def test_unity_config_only_camera_misspelt(self, at_unity, tmp_path, monkeypatch, capsys):
        path = write_json(tmp_path / "unity.json", {"name": "typo", "cameras": {"camra": "CAM_FRONT"}})
        code, _, err = run_cli(["create-infos", "-q", "--root-path", "solo", "--unity-config", path,
                                "--out-dir", tmp_path / "out"], monkeypatch, capsys)
        assert_error(code, err, "camra (did you mean camera?)")

    @pytest.mark.parametrize("version, fragment", [
        ("v1.0-mni", "--version v1.0-mni (did you mean v1.0-mini"),
        ("v1.0-trainval", "--version v1.0-trainval: no folder data/nuscenes/v1.0-trainval; use --version v1.0-mini "
                          "(present: v1.0-mini)"),
    ], ids=["typo", "absent"])
    def test_create_infos_version(self, at_occ, tmp_path, monkeypatch, capsys, version, fragment):
        code, _, err = run_cli(["create-infos", "-q", "--version", version, "--out-dir", tmp_path / "out"],
                               monkeypatch, capsys)
        assert_error(code, err, fragment)
        assert not (tmp_path / "out").exists()

    def test_merge_extra_tag_typo(self, at_occ, tmp_path, monkeypatch, capsys):
        code, _, err = run_cli(merge_args("infos", tmp_path / "out", "openocc-v1", "--extra-tag", "nuscene"),
                               monkeypatch, capsys)
        assert_error(code, err, "infos/nuscene_infos_temporal_train.pkl: infos file not found",
                     "infos holds infos tagged nuscenes: use --extra-tag nuscenes")
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("command", ["create-infos", "merge-occ"])
    def test_target_typo(self, at_occ, tmp_path, monkeypatch, capsys, command):
        args = (CREATE + ["--no-file-check", "--out-dir", tmp_path / "out", "--target", "bevfromer,mmdet3d"]
                if command == "create-infos" else
                merge_args("infos", tmp_path / "out", "openocc-v1", "--target", "bevfromer,mmdet3d"))
        code, _, err = run_cli(args, monkeypatch, capsys)
        assert_error(code, err, "--target bevfromer,mmdet3d: 1 target(s) not known: "
                                "bevfromer (did you mean bevformer?)")
        assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- 3. path mix-ups: --root-path


ROOT_MIXUPS = [
    ("data/nuscenes/v1.0-mini", "the version folder v1.0-mini/ itself",
     "--root-path data/nuscenes --version v1.0-mini"),
    ("data", "one level above the dataset root", "--root-path data/nuscenes"),
    ("data/nuscenes/maps", "inside the dataset root", "--root-path data/nuscenes"),
]


class TestRootPath:
    """`--root-path` one step off: check and create-infos name the same corrected flags."""

    @pytest.mark.parametrize("given, what, fix", ROOT_MIXUPS, ids=["version-folder", "too-high", "too-low"])
    def test_create_infos(self, at_occ, tmp_path, monkeypatch, capsys, given, what, fix):
        code, _, err = run_cli(CREATE + ["--no-file-check", "--root-path", given, "--out-dir", tmp_path / "out"],
                               monkeypatch, capsys)
        assert_error(code, err, f"--root-path {given} is {what}", f"use {fix}")
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("given, what, fix", ROOT_MIXUPS, ids=["version-folder", "too-high", "too-low"])
    def test_check(self, at_occ, monkeypatch, capsys, given, what, fix):
        code, out, _ = run_cli(["check", "-q", "--no-blobs", "--root-path", given], monkeypatch, capsys)
        assert code == 1
        assert f"[ERROR] {given}: no v1.0-* version folder here: this is {what}" in out
        assert f"fix: use {fix}" in out
        assert "extract the metadata archive" not in out

    def test_check_sensor_folders_beside_the_root(self, blobs_mini, monkeypatch, capsys):
        """check's fix line for samples/ extracted beside the root is the `mv` command."""
        for name in ("samples", "sweeps"):
            shutil.move(blobs_mini / name, blobs_mini.parent / name)
        code, out, _ = run_cli(["check", "-q", "--root-path", "data/nuscenes"], monkeypatch, capsys)
        assert code == 1
        assert ("fix: samples/ and sweeps/ are in data, beside the dataset root data/nuscenes: move them into it "
                "(mv data/samples data/sweeps data/nuscenes/)") in out

    @pytest.mark.parametrize("command", ["create-infos", "export-nuscenes"])
    def test_unity_sequence_folder(self, at_unity, tmp_path, monkeypatch, capsys, command):
        out = tmp_path / "out"
        code, _, err = run_cli([command, "-q", "--root-path", "solo/sequence.0",
                                "--out-dir" if command == "create-infos" else "--out", out], monkeypatch, capsys)
        assert_error(code, err, "--root-path solo/sequence.0 is one sequence.<N> folder of a SOLO run: "
                                "use --root-path solo")
        assert not out.exists()

    def test_check_unity_sequence_folder(self, at_unity, monkeypatch, capsys):
        code, out, _ = run_cli(["check", "-q", "--root-path", "solo/sequence.0"], monkeypatch, capsys)
        assert code == 1
        assert "--root-path solo" in out and "extract the metadata archive" not in out


# ----------------------------------------------------------------------------- 3. path mix-ups: --canbus


class TestCanbus:
    """`--canbus` one step off: create-infos takes the corrected folder and says so; check warns with
    it; a --canbus elsewhere while data/can_bus exists beside the root is an error naming it."""

    @pytest.fixture
    def nested(self, occ_base, tmp_path) -> Path:
        """tmp_path/nest/can_bus/can_bus: the CAN bus files one folder too deep."""
        (tmp_path / "nest" / "can_bus").mkdir(parents=True)
        (tmp_path / "nest" / "can_bus" / "can_bus").symlink_to(occ_base / "data" / "can_bus")
        return tmp_path / "nest"

    @pytest.mark.parametrize("given, what", [
        ("data/can_bus", "can_bus/ itself (give the folder that contains it)"),
        (".", "one level above the folder that contains can_bus/"),
    ], ids=["can_bus-itself", "too-high"])
    def test_create_infos_takes_the_corrected_folder(self, at_occ, tmp_path, monkeypatch, capsys, given, what):
        report = tmp_path / "report.json"
        code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--no-file-check", "--canbus", given,
                                "--out-dir", tmp_path / "out", "--report", report], monkeypatch, capsys)
        assert code == 0, err
        note = f"--canbus {given} is {what}: use --canbus data (used data)"
        assert note in err and "without CAN bus" not in err
        assert json.loads(report.read_text())["notes"] == [note]
        assert infos_of(tmp_path / "out" / INFOS.format("val"))[0]["can_bus"].any()

    def test_create_infos_nested(self, at_occ, nested, tmp_path, monkeypatch, capsys):
        code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--no-file-check", "--canbus", nested,
                                "--out-dir", tmp_path / "out"], monkeypatch, capsys)
        assert code == 0, err
        assert f"--canbus {nested} is two levels above the CAN bus files (can_bus/can_bus/): " \
               f"use --canbus {nested}/can_bus (used {nested}/can_bus)" in err

    @pytest.mark.parametrize("given, what, fix", [
        ("data/can_bus", "can_bus/ itself", "data"),
        (".", "one level above the folder that contains can_bus/", "data"),
    ], ids=["can_bus-itself", "too-high"])
    def test_check_warns_with_the_corrected_flag(self, at_occ, monkeypatch, capsys, given, what, fix):
        code, out, _ = run_cli(["check", "-q", "--no-blobs", "--canbus", given], monkeypatch, capsys)
        assert code == 0
        assert f"[warn]  {given}: no can_bus/ with *_pose.json here: this is {what}" in out
        assert f"fix: use --canbus {fix} (create-infos takes {fix} and says so)" in out

    def test_check_nested(self, at_occ, nested, monkeypatch, capsys):
        code, out, _ = run_cli(["check", "-q", "--no-blobs", "--canbus", nested], monkeypatch, capsys)
        assert code == 0
        assert f"fix: use --canbus {nested}/can_bus" in out

    def test_elsewhere_while_data_can_bus_exists(self, at_occ, tmp_path, monkeypatch, capsys):
        """A --canbus without can_bus/ while data/can_bus is beside the root: create-infos and check name it."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        code, _, err = run_cli(CREATE + ["--no-file-check", "--canbus", elsewhere, "--out-dir", tmp_path / "out"],
                               monkeypatch, capsys)
        assert_error(code, err, f"--canbus {elsewhere} is not where can_bus/ is (data holds it): use --canbus data")
        assert not (tmp_path / "out").exists()
        code, out, _ = run_cli(["check", "-q", "--no-blobs", "--canbus", elsewhere], monkeypatch, capsys)
        assert code == 1 and "fix: use --canbus data" in out

    def test_convert_can_bus_itself(self, at_occ, tmp_path, monkeypatch, capsys):
        data = load_pickle(Path("infos") / INFOS.format("val"))
        for info in data["infos"]:
            del info["can_bus"]
        dump_pickle(data, tmp_path / INFOS.format("val"))
        code, _, err = run_cli(["convert", "-q", tmp_path / INFOS.format("val"), "--to", "bevformer",
                                "--out", tmp_path / "out.pkl", "--root-path", "data/nuscenes",
                                "--canbus", "data/can_bus"], monkeypatch, capsys)
        assert code == 0 or "--canbus data" in err, err


# ----------------------------------------------------------------------------- 3. path mix-ups: --occ-root


OCC_MIXUPS = [
    ("openocc-v1", "data", "one level above the OpenOcc v1 release (the folder that holds occ_gt_{split}.json)",
     "data/occ_gt_release_v1_0"),
    ("openocc-v1", "data/occ_gt_release_v1_0/train", "inside the OpenOcc v1 release", "data/occ_gt_release_v1_0"),
    ("occ3d", "data/nuscenes/gts", "the gts/ folder itself", "data/nuscenes"),
    ("occ3d", "data/nuscenes/gts/scene-0061", "a scene folder inside the Occ3D release (give the folder that holds gts/)",
     "data/nuscenes"),
    ("occ3d", "data", "one level above the Occ3D release (the folder that holds gts/)", "data/nuscenes"),
]
OCC_IDS = ["openocc-too-high", "openocc-too-low", "occ3d-gts", "occ3d-scene", "occ3d-too-high"]


class TestOccRoot:
    """`--occ-root` one step off: merge-occ (per --format) and check name the corrected flag."""

    @pytest.mark.parametrize("fmt, given, what, fix", OCC_MIXUPS, ids=OCC_IDS)
    def test_merge(self, at_occ, tmp_path, monkeypatch, capsys, fmt, given, what, fix):
        out = tmp_path / "out"
        code, _, err = run_cli(["merge-occ", "-q", "--infos-dir", "infos", "--format", fmt, "--occ-root", given,
                                "--out-dir", out], monkeypatch, capsys)
        assert_error(code, err, f"--occ-root {given} is {what}", f"use --occ-root {fix}")
        assert not out.exists()

    @pytest.mark.parametrize("fmt, given, what, fix", OCC_MIXUPS[:4], ids=OCC_IDS[:4])
    def test_check(self, at_occ, monkeypatch, capsys, fmt, given, what, fix):
        code, out, _ = run_cli(["check", "-q", "--no-blobs", "--occ-root", given], monkeypatch, capsys)
        assert code == 1
        assert f"[ERROR] {given}: no occupancy ground truth here: this is {what}" in out
        assert f"fix: use --occ-root {fix}" in out

    def test_check_occ3d_one_level_too_high(self, occ_base, tmp_path, monkeypatch, capsys):
        """Without an OpenOcc release beside it, check --occ-root data names data/nuscenes (Occ3D's gts/)."""
        (tmp_path / "data").mkdir()
        for name in ("nuscenes", "can_bus"):
            (tmp_path / "data" / name).symlink_to(occ_base / "data" / name)
        monkeypatch.chdir(tmp_path)
        code, out, _ = run_cli(["check", "-q", "--no-blobs", "--occ-root", "data"], monkeypatch, capsys)
        assert code == 1
        assert "[ERROR] data: no occupancy ground truth here: this is one level above the Occ3D release (the folder that holds gts/)" in out
        assert "fix: use --occ-root data/nuscenes" in out


# ----------------------------------------------------------------------------- 4. the shared cases


class TestSharedCases:
    """/work/shared/cases/*: each situation on generated scene-0916 tables, with its README's expectation."""

    def test_all_scenes_left_out_keeps_the_older_pickles(self, mini_0916, monkeypatch, capsys):
        """all-scenes-left-out-empty-pickles: no sensor file -> error naming the fixes; older pickles intact."""
        code, _, err = run_cli(CREATE + ["--no-file-check"], monkeypatch, capsys)
        assert code == 0, err
        assert len(infos_of(mini_0916 / INFOS.format("val"))) == SAMPLES
        before = snapshot(mini_0916)
        code, _, err = run_cli(CREATE, monkeypatch, capsys)
        assert_error(code, err, "the root holds no sensor files at all", "extract the blob archives",
                     "--no-file-check")
        assert snapshot(mini_0916) == before

    def test_all_scenes_left_out_trainval_samples_beside_the_root(self, tmp_path, monkeypatch, capsys):
        """The README's trainval variant: samples/ moved to data/samples; create-infos and check name the `mv`."""
        synthesize(tmp_path / "data", "v1.0-trainval", scenes=2, samples_per_scene=SAMPLES, occ=(), blobs="empty")
        monkeypatch.chdir(tmp_path)
        shutil.move("data/nuscenes/samples", "data/samples")
        mv = "(mv data/samples data/nuscenes/)"
        code, _, err = run_cli(["create-infos", "-q", "--version", "v1.0-trainval", "--root-path", "data/nuscenes",
                                "--out-dir", "out"], monkeypatch, capsys)
        assert_error(code, err, "the root holds no sensor files at all", mv)
        assert not Path("out").exists()
        code, out, _ = run_cli(["check", "-q", "--root-path", "data/nuscenes"], monkeypatch, capsys)
        assert code == 1
        assert f"fix: samples/ are in data, beside the dataset root data/nuscenes: move them into it {mv}" in out

    def test_root_path_version_folder(self, mini_0916, monkeypatch, capsys):
        """root-path-version-folder-misdiagnosed: check and create-infos both name data/nuscenes."""
        code, out, _ = run_cli(["check", "-q", "--no-blobs", "--root-path", "data/nuscenes/v1.0-mini"],
                               monkeypatch, capsys)
        assert code == 1 and "--root-path data/nuscenes --version v1.0-mini" in out
        assert "extract the metadata archive" not in out
        code, _, err = run_cli(CREATE + ["--no-file-check", "--root-path", "data/nuscenes/v1.0-mini"],
                               monkeypatch, capsys)
        assert_error(code, err, "use --root-path data/nuscenes --version v1.0-mini")
        assert not list(mini_0916.glob("*.pkl"))

    @pytest.mark.parametrize("val, fragment", [
        ("scene-0061", "scene-0061"),
        ("scene-916", "scene-916 (did you mean scene-0916?)"),
    ], ids=["absent-scene", "typo"])
    def test_splits_unknown_scene(self, mini_0916, tmp_path, monkeypatch, capsys, val, fragment):
        """splits-unknown-scene-silent: a listed scene absent from the tables is named; no pickle written."""
        lists = {"val": [val]} if val == "scene-916" else {"train": ["scene-0916"], "val": [val]}
        splits = write_json(tmp_path / "splits.json", lists)
        code, _, err = run_cli(CREATE + ["--no-file-check", "--splits", "splits.json"], monkeypatch, capsys)
        assert_error(code, err, f"splits.json: 1 scene(s) not in the data: {fragment}",
                     "the v1.0-mini tables hold 1 scene(s)")
        assert splits.is_file() and not list(mini_0916.glob("*.pkl"))
