"""The end-to-end driving targets, uniad and vad: every value against nuscenes-devkit (`PredictHelper`
itself for UniAD's futures, a sample-by-sample recomputation through the devkit API for VAD's arrays),
on the real mini scene and on generated data; the stand-ins named in the summary; the fix flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import target_oracle
from helpers import assert_same, run_cli, working_directory
from occprep.cli import cli
from occprep.inspection import inspect_pickle
from occprep.pickles import load_pickle
from occprep.targets import identify

VAD_FIXES = ("ego-yaw", "goal", "fut-yaw", "speed")


def create(base: Path, *args: str) -> str:
    """Run create-infos on the v1.0-mini laid out in `base`; returns its output."""
    with working_directory(base):
        result = CliRunner().invoke(cli, ["create-infos", "--version", "v1.0-mini", "--no-file-check", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module", params=["generated", "real"])
def made(request, tmp_path_factory):
    """(base, devkit NuScenes, devkit NuScenesCanBus, out folder) after one create-infos run with
    bevformer, uniad and vad."""
    from nuscenes import NuScenes
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus

    data = request.getfixturevalue("generated_mini" if request.param == "generated" else "real_mini")
    base = data.lay_out(tmp_path_factory.mktemp(f"e2e-{request.param}"))
    create(base, "--out-dir", "out", "--target", "bevformer,uniad,vad", "--quiet")
    with working_directory(base):
        nusc = NuScenes(version="v1.0-mini", dataroot="./data/nuscenes", verbose=False)
    return base, nusc, NuScenesCanBus(dataroot=str(base / "data")), base / "out"


def splits(made):
    return [split for split in ("train", "val") if load_pickle(made[3] / f"nuscenes_infos_temporal_{split}.pkl")["infos"]]


def test_uniad_matches_the_devkit_predict_helper(made):
    from nuscenes.prediction import PredictHelper

    _, nusc, _, out = made
    helper = PredictHelper(nusc)
    for split in splits(made):
        bevformer = load_pickle(out / f"nuscenes_infos_temporal_{split}.pkl")["infos"]
        uniad = load_pickle(out / "uniad" / f"nuscenes_infos_temporal_{split}.pkl")
        assert identify(uniad) is not None and identify(uniad).name == "uniad"
        assert uniad["metadata"] == {"version": "v1.0-mini"} and len(uniad["infos"]) == len(bevformer)
        for info, reference in zip(uniad["infos"], bevformer):
            target_oracle.assert_uniad_info(nusc, helper, info, reference)
    futures = np.concatenate([i["fut_traj_valid_mask"][:, :, 0].sum(1) for i in uniad["infos"]])
    assert futures.max() == 16 and futures.min() == 0  # full 8 s futures and track ends both covered


def test_vad_matches_the_devkit(made):
    _, nusc, can_bus, out = made
    for split in splits(made):
        bevformer = load_pickle(out / f"nuscenes_infos_temporal_{split}.pkl")["infos"]
        vad = load_pickle(out / f"vad_nuscenes_infos_temporal_{split}.pkl")
        assert identify(vad).name == "vad" and len(vad["infos"]) == len(bevformer)
        for info, reference in zip(vad["infos"], bevformer):
            target_oracle.assert_vad_info(nusc, can_bus, info, reference)
        flags = [info["fut_valid_flag"] for info in vad["infos"]]
        assert flags.count(False) == 6 * len({info["scene_token"] for info in vad["infos"]})


def test_inspect_finds_each_pickle_fit_for_its_planner(made):
    out = made[3]
    split = splits(made)[0]
    for name, path in (("UniAD", f"uniad/nuscenes_infos_temporal_{split}.pkl"),
                       ("VAD", f"vad_nuscenes_infos_temporal_{split}.pkl")):
        fits = {fit.name: fit for fit in inspect_pickle(out / path).consumers}
        assert fits[name].ok and fits["BEVFormer"].ok, name
    fits = {fit.name: fit for fit in inspect_pickle(out / f"nuscenes_infos_temporal_{split}.pkl").consumers}
    assert fits["UniAD"].missing_info_keys == ("gt_inds",) and "fut_valid_flag" in fits["VAD"].missing_info_keys


def test_vad_fixes_change_what_they_name(made, tmp_path):
    """Each --fix-vad-* flag equals the recomputation with that fault mended, and changes values."""
    base, nusc, can_bus, out = made
    split = splits(made)[0]
    flags = [f"--fix-vad-{name}" for name in VAD_FIXES]
    create(base, "--out-dir", str(tmp_path), "--target", "vad", "--quiet", *flags)
    fixed = load_pickle(tmp_path / f"vad_nuscenes_infos_temporal_{split}.pkl")["infos"]
    default = load_pickle(out / f"vad_nuscenes_infos_temporal_{split}.pkl")["infos"]
    bevformer = load_pickle(out / f"nuscenes_infos_temporal_{split}.pkl")["infos"]
    for info, reference in zip(fixed, bevformer):
        target_oracle.assert_vad_info(nusc, can_bus, info, reference, VAD_FIXES)
    ego = np.array([i["gt_ego_lcf_feat"] for i in fixed]) - np.array([i["gt_ego_lcf_feat"] for i in default])
    assert np.abs(ego[:, [0, 1, 4]]).max() > 0.1 and not ego[:, 2:4].any() and not ego[:, 5:].any()
    goals = np.concatenate([i["gt_agent_fut_goal"] for i in fixed]) != np.concatenate(
        [i["gt_agent_fut_goal"] for i in default])
    assert goals.any()


def test_vad_names_scenes_without_steering_and_keeps_their_values_honest(writable_mini, tmp_path, monkeypatch,
                                                                         capsys):
    """A missing steering file: the reference's stand-ins (v0 from the ego track, curvature 0), the scene
    named in the summary and the JSON report; --fix-vad-speed keeps the pose speed."""
    from nuscenes import NuScenes
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus

    (tmp_path / "data" / "can_bus" / "scene-0103_steeranglefeedback.json").unlink()
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "report.json"
    code, _, err = run_cli(["create-infos", "--version", "v1.0-mini", "--no-file-check", "--out-dir", "out",
                            "--target", "vad", "--report", report], monkeypatch, capsys)
    assert code == 0, err
    assert "vad: 1 scene(s) with stand-in values:" in err
    assert ("scene-0103: no file can_bus/scene-0103_steeranglefeedback.json: v0 from the ego track, curvature 0"
            in err)
    gaps = json.loads(report.read_text())["versions"][0]["stand_in_values"]["vad"]
    assert list(gaps) == ["scene-0103"]
    nusc = NuScenes(version="v1.0-mini", dataroot="./data/nuscenes", verbose=False)
    can_bus = NuScenesCanBus(dataroot="./data")
    bevformer_out = tmp_path / "bevformer"
    create(tmp_path, "--out-dir", str(bevformer_out), "--quiet")
    bevformer = load_pickle(bevformer_out / "nuscenes_infos_temporal_val.pkl")["infos"]
    vad = load_pickle(tmp_path / "out" / "vad_nuscenes_infos_temporal_val.pkl")["infos"]
    for info, reference in zip(vad, bevformer):
        target_oracle.assert_vad_info(nusc, can_bus, info, reference)
        assert info["gt_ego_lcf_feat"][8] == 0
    create(tmp_path, "--out-dir", "fixed", "--target", "vad", "--fix-vad-speed", "--quiet")
    fixed = load_pickle(tmp_path / "fixed" / "vad_nuscenes_infos_temporal_val.pkl")["infos"]
    poses = can_bus.get_messages("scene-0103", "pose")
    for info in fixed:
        nearest = min(poses, key=lambda m: (abs(m["utime"] - info["timestamp"]), -m["utime"]))
        assert info["gt_ego_lcf_feat"][7] == np.float32(nearest["vel"][0])


def test_uniad_goes_to_its_own_folder_unless_alone_with_an_out_dir(generated_mini, tmp_path):
    base = generated_mini.lay_out(tmp_path)
    output = create(base, "--target", "uniad", "--out-dir", "alone")
    assert (base / "alone" / "nuscenes_infos_temporal_val.pkl").exists() and "own" not in output
    output = create(base, "--target", "uniad")
    assert (base / "data" / "nuscenes" / "uniad" / "nuscenes_infos_temporal_val.pkl").is_file()
    assert not (base / "data" / "nuscenes" / "nuscenes_infos_temporal_val.pkl").exists()
    assert "uniad writes another target's file names: it went to data/nuscenes/uniad/" in output


def test_test_split_keeps_the_scene_keys_only(tmp_path):
    from occprep.synth import synthesize

    synthesize(tmp_path, "v1.0-test", scenes=2, samples_per_scene=8, occ=(), blobs="none")
    (tmp_path / "can_bus").mkdir(exist_ok=True)  # test scenes have no CAN bus files
    with working_directory(tmp_path):
        result = CliRunner().invoke(cli, ["create-infos", "--root-path", "nuscenes", "--canbus", ".", "--version",
                                          "v1.0-test", "--no-file-check", "--out-dir", "out", "--target",
                                          "uniad,vad"])
    assert result.exit_code == 0, result.output
    assert "stand-in" not in result.output  # the ego arrays, which need the CAN bus, are not written
    vad = load_pickle(tmp_path / "out" / "vad_nuscenes_infos_temporal_test.pkl")["infos"]
    assert [list(i) for i in vad] == [target_oracle.VAD_KEYS[:16]] * 16
    assert [i["fut_valid_flag"] for i in vad] == ([True] * 2 + [False] * 6) * 2
    uniad = load_pickle(tmp_path / "out" / "uniad" / "nuscenes_infos_temporal_test.pkl")["infos"]
    assert [list(i) for i in uniad] == [target_oracle.UNIAD_KEYS[:14]] * 16


def test_convert_reaches_uniad_and_vad_with_the_tables(made, tmp_path, monkeypatch, capsys):
    base, _, _, out = made
    split = splits(made)[0]
    source = out / f"nuscenes_infos_temporal_{split}.pkl"
    monkeypatch.chdir(base)
    code, _, err = run_cli(["convert", source, "--to", "vad", "--out", tmp_path / "v.pkl"], monkeypatch, capsys)
    assert code == 2 and "lacks fut_valid_flag, map_location" in err and "--root-path" in err
    code, _, err = run_cli(["convert", source, "--to", "vad", "--out", tmp_path / "v.pkl", "--root-path",
                            "./data/nuscenes"], monkeypatch, capsys)
    assert code == 2 and "vad reads the CAN bus messages: pass --canbus DIR" in err
    for target, expected in (("vad", f"vad_nuscenes_infos_temporal_{split}.pkl"),
                             ("uniad", f"uniad/nuscenes_infos_temporal_{split}.pkl")):
        code, _, err = run_cli(["convert", source, "--to", target, "--out", tmp_path / f"{target}.pkl", "--root-path",
                                "./data/nuscenes", "--canbus", "./data", "--quiet"], monkeypatch, capsys)
        assert code == 0, err
        assert_same(load_pickle(tmp_path / f"{target}.pkl"), load_pickle(out / expected), target)
        code, _, err = run_cli(["convert", tmp_path / f"{target}.pkl", "--to", "bevformer", "--out",
                                tmp_path / f"{target}-back.pkl", "--root-path", "./data/nuscenes", "--quiet"],
                               monkeypatch, capsys)
        assert code == 0, err
        assert_same(load_pickle(tmp_path / f"{target}-back.pkl"), load_pickle(source), f"{target} -> bevformer")
