"""merge-occ on the engines: `--verify` in tasks of whole scenes on `--engine local|dask` gives the same merged
pickles and the same problems, in the same order, as checking every file in this process; ground truth files
are found from one listing per folder (`occprep.blobs.FolderListing`), with the results of one stat per
candidate."""

import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from helpers import create_infos_in, digest, run_cli
from occprep import occupancy
from occprep.blobs import FolderListing
from occprep.config import occupancy_format
from occprep.engines import LocalEngine
from occprep.occupancy import LAYOUTS, PathLocator
from occprep.pickles import load_pickle
from occprep.reporting import Reporter
from occprep.synth import synthesize

ENGINES = {"local-1": ("--engine", "local", "--workers", "1"),
           "local-2": ("--engine", "local", "--workers", "2"),
           "dask-synchronous": ("--engine", "dask", "--scheduler", "synchronous")}
FORMATS = {"occ3d": ("--format", "occ3d", "--occ-root", "data/nuscenes"),
           "openocc-v1": ("--format", "openocc-v1", "--occ-root", "data/occ_gt_release_v1_0")}
"""--format and --occ-root of the two layouts the world holds."""
MERGED = {"occ3d": "nuscenes_infos_temporal_{split}_occ3d.pkl", "openocc-v1": "nuscenes_infos_temporal_{split}_occ_gt.pkl"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """`data/` of a generated four-scene mini (three train scenes, one val, 3 samples each) with Occ3D and
    OpenOcc v1 ground truth, and its bevformer infos in `data/nuscenes`."""
    base = tmp_path_factory.mktemp("merge-occ-engine")
    synthesize(base / "data", "v1.0-mini", scenes=4, samples_per_scene=3, occ=("occ3d", "openocc-v1"))
    create_infos_in(base)
    return base


@pytest.fixture
def at_world(world, tmp_path, monkeypatch) -> Path:
    """A writable copy of `world` as the cwd; verify tasks of one scene each (several tasks per run)."""
    shutil.copytree(world / "data", tmp_path / "data", symlinks=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(occupancy, "TASK_SAMPLES", 1)
    return tmp_path


def merge(monkeypatch, capsys, fmt: str, *args) -> tuple:
    """`occprep merge-occ` of `fmt` with `args`; (exit code, stderr)."""
    code, _, err = run_cli(["merge-occ", "--infos-dir", "data/nuscenes", *FORMATS[fmt], *args], monkeypatch, capsys)
    return code, err


def merged_files(fmt: str, folder: Path) -> list:
    """File role -> located file of every merged info in `folder` (merged with --path-style absolute), in input
    order (train, then val)."""
    keys = {key: role for key, (role, names_folder) in LAYOUTS[fmt].located_keys.items() if not names_folder}
    return [{role: info[key] for key, role in keys.items()}
            for split in ("train", "val") for info in load_pickle(folder / MERGED[fmt].format(split=split))["infos"]]


def in_process_problems(fmt: str, samples: list) -> list:
    """What checking every sample in this process, one after the other, reports (the behaviour before engines)."""
    layout, occ_format = LAYOUTS[fmt], occupancy_format(fmt)
    return [problem for files in samples for problem in layout.check(files, occ_format)]


def damage(fmt: str, root: Path) -> None:
    """Break one file in a train scene and one in the val scene (so the problems come from two tasks)."""
    if fmt == "occ3d":
        scenes = sorted((root / "data/nuscenes/gts").iterdir())
        first = sorted(scenes[1].iterdir())[0] / "labels.npz"
        first.write_bytes(b"PK\x03\x04 truncated")
        last = sorted(scenes[0].iterdir())[-1] / "labels.npz"
        with np.load(last) as npz:
            arrays = dict(npz)
        arrays["semantics"][0, 0, 0] = 18
        np.savez_compressed(last, **arrays)
    else:
        train = sorted((root / "data/occ_gt_release_v1_0/train").iterdir())
        sorted(train[1].glob("*_flow.npy"))[0].write_bytes(b"\x93NUMPY garbage")
        np.save(sorted((root / "data/occ_gt_release_v1_0/val").glob("*/*_occ.npy"))[-1],
                np.zeros((4, 3), dtype=np.int64))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_engines_write_the_same_pickles_as_without_verify(at_world, monkeypatch, capsys, fmt):
    code, err = merge(monkeypatch, capsys, fmt, "--out-dir", "plain")
    assert code == 0, err
    expected = {split: digest(Path("plain") / MERGED[fmt].format(split=split)) for split in ("train", "val")}
    for name, engine in ENGINES.items():
        code, err = merge(monkeypatch, capsys, fmt, "--verify", *engine, "--out-dir", name, "--report", f"{name}.json")
        assert code == 0, (name, err)
        for split, payload in expected.items():
            assert digest(Path(name) / MERGED[fmt].format(split=split)) == payload, (name, split)
        report = json.loads(Path(f"{name}.json").read_text())
        assert report["verify"] == {"samples": 12, "problems": []}, name
        assert "verified 12 samples: no problems" in err


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_engines_report_a_corrupt_file_as_checking_in_process_does(at_world, monkeypatch, capsys, fmt):
    code, err = merge(monkeypatch, capsys, fmt, "--out-dir", "plain", "--path-style", "absolute")
    assert code == 0, err
    damage(fmt, at_world)
    expected = in_process_problems(fmt, merged_files(fmt, Path("plain")))
    assert len(expected) == 2 and sum("not a readable" in problem for problem in expected) == 1
    last_lines = set()
    for name, engine in ENGINES.items():
        code, err = merge(monkeypatch, capsys, fmt, "--verify", *engine, "--out-dir", name, "--report", f"{name}.json")
        assert code == 2, (name, err)
        assert json.loads(Path(f"{name}.json").read_text())["verify"]["problems"] == expected, name
        last_lines.add(err.strip().splitlines()[-1])
        assert not Path(name).exists()
    [line] = last_lines
    assert line == f"error: 2 problems in ground truth files: {', '.join(expected)}; nothing written"


def test_engine_flags(at_world, monkeypatch, capsys):
    code, err = merge(monkeypatch, capsys, "occ3d", "--engine", "dask")
    assert code == 2 and err.strip() == "error: --engine needs --verify (the file checks are what runs on the engine)"
    code, err = merge(monkeypatch, capsys, "occ3d", "--verify", "--scheduler", "tcp://localhost:1")
    assert code == 2 and err.strip() == "error: --scheduler needs --engine dask"
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the dask extra were not installed
    code, err = merge(monkeypatch, capsys, "occ3d", "--verify", "--engine", "dask")
    assert code == 2 and err.strip() == "error: --engine dask needs the dask extra: pip install 'occprep[dask]'"


def test_verify_tasks_are_runs_of_whole_scenes(monkeypatch):
    samples = [(scene, {"labels": f"{scene}/{i}"}) for scene, n in (("a", 3), ("b", 2), ("c", 4), ("a", 1))
               for i in range(n)]
    monkeypatch.setattr(occupancy, "TASK_SAMPLES", 4)
    tasks = occupancy.verify_tasks(samples, "occ3d")
    assert [[files["labels"] for files in task.samples] for task in tasks] == [
        ["a/0", "a/1", "a/2", "b/0", "b/1"], ["c/0", "c/1", "c/2", "c/3"], ["a/0"]]
    assert {task.layout for task in tasks} == {"occ3d"}
    monkeypatch.setattr(occupancy, "MAX_TASKS", 2)
    assert len(occupancy.verify_tasks(samples, "occ3d")) == 2  # bigger tasks: at least len / MAX_TASKS samples each
    assert occupancy.verify_tasks([], "occ3d") == []


def test_verify_samples_keeps_input_order_across_tasks(tmp_path, monkeypatch):
    samples = []
    for i in range(12):
        arrays = {name: np.zeros((200, 200, 16), np.uint8) for name in ("semantics", "mask_lidar", "mask_camera")}
        arrays["semantics"][0, 0, 0] = 18 if i % 5 == 0 else 17
        path = tmp_path / f"{i:02d}" / "labels.npz"
        path.parent.mkdir()
        np.savez_compressed(path, **arrays)
        samples.append((f"scene-{i // 3}", {"labels": str(path)}))
    monkeypatch.setattr(occupancy, "TASK_SAMPLES", 1)
    assert len(occupancy.verify_tasks(samples, "occ3d")) == 4
    problems = occupancy.verify_samples(samples, "occ3d", LocalEngine(2, Reporter("merge-occ", quiet=True)))
    assert [Path(p.split(":")[0]).parent.name for p in problems] == ["00", "05", "10"]


@pytest.mark.parametrize("fmt, cwd", [("occ3d", "."), ("openocc-v1", "."), ("openocc-v1", "elsewhere")])
def test_ground_truth_files_are_found_from_one_listing_per_folder(at_world, monkeypatch, capsys, fmt, cwd):
    """No stat of a found file; each folder that holds them listed once (from elsewhere, the release's
    ./data/... paths are found through the occ root's parents after the cwd and the root fail)."""
    os.makedirs(cwd, exist_ok=True)
    monkeypatch.chdir(cwd)
    infos, root = (at_world / "data/nuscenes", at_world / FORMATS[fmt][-1])
    listed, stated = Counter(), []
    real_scandir, real_stat = os.scandir, os.stat

    def scandir(path="."):
        entries = real_scandir(path)
        listed[os.path.abspath(os.fspath(path))] += 1
        return entries

    def stat(path, *args, **kwargs):
        stated.append(os.path.abspath(os.fspath(path)))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat)
    code, _, err = run_cli(["merge-occ", "--infos-dir", infos, "--format", fmt, "--occ-root", root, "--out-dir",
                            at_world / "out", "--path-style", "absolute"], monkeypatch, capsys)
    monkeypatch.setattr(os, "scandir", real_scandir)
    monkeypatch.setattr(os, "stat", real_stat)
    assert code == 0, err
    found = [path for files in merged_files(fmt, at_world / "out") for path in files.values()]
    assert len(found) == 12 * (3 if fmt == "openocc-v1" else 1) and all(os.path.isfile(path) for path in found)
    assert not set(found) & set(stated)
    assert {folder: listed[folder] for folder in {os.path.dirname(path) for path in found}} == \
        {folder: 1 for folder in {os.path.dirname(path) for path in found}}


def test_locator_answers_as_one_stat_per_candidate(tmp_path):
    root = tmp_path / "elsewhere" / "data" / "occ_root"
    (root / "train" / "s").mkdir(parents=True)
    (root / "train" / "s" / "a.npy").write_bytes(b"")
    (root / "train" / "s" / "dir").mkdir()
    (root / "train" / "s" / "link.npy").symlink_to(root / "train" / "s" / "a.npy")
    (root / "train" / "s" / "broken.npy").symlink_to(root / "train" / "s" / "gone.npy")
    (root / "linked").symlink_to(root / "train")
    cwd = tmp_path / "work"
    (cwd / "train" / "s").mkdir(parents=True)
    (cwd / "train" / "s" / "b.npy").write_bytes(b"")
    texts = ["train/s/a.npy", "train/s/b.npy", "./data/occ_root/train/s/a.npy", "x/occ_root/train/s/a.npy",
             "train/s/dir", "train/s/dir/", "train/s/link.npy", "train/s/broken.npy", "train/s/gone.npy",
             "linked/s/a.npy", "linked/../train/s/a.npy", "train/s/a.npy/x", "train/s/..", "train/s/.", "",
             str(root / "train" / "s" / "a.npy"), str(root / "missing.npy"), "train/s/a\0.npy"]
    locator, one_stat_each = PathLocator(root, cwd=cwd), PathLocator(root, cwd=cwd, exists=os.path.exists)
    for _ in range(2):  # the second time from the kept listings
        assert [locator.locate(text) for text in texts] == [one_stat_each.locate(text) for text in texts]
    assert locator.locate("train/s/a.npy") == str(root / "train" / "s" / "a.npy")
    assert locator.locate("train/s/b.npy") == str(cwd / "train" / "s" / "b.npy")


def test_folder_listing_names_and_errors(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    listing = FolderListing()
    assert listing.names(str(tmp_path)) == {"f"}
    assert listing.names(str(tmp_path / "f")) is None and listing.names(str(tmp_path / "nope")) is None
    (tmp_path / "g").write_bytes(b"")
    assert listing.names(str(tmp_path)) == {"f"}  # kept
    assert not listing.exists(str(tmp_path / "nope" / "x"))
    (tmp_path / "nope").mkdir()
    (tmp_path / "nope" / "x").write_bytes(b"")
    assert listing.exists(str(tmp_path / "nope" / "x"))  # a folder that was missing is asked again


def test_a_missing_and_a_corrupt_file_are_both_named(at_world, monkeypatch, capsys):
    """A missing ground truth file fails the coverage check; the corrupt one is named beside it, and in the
    summary."""
    gts = sorted((at_world / "data/nuscenes/gts").iterdir())
    shutil.rmtree(sorted(gts[2].iterdir())[0])
    corrupt = sorted(gts[1].iterdir())[0] / "labels.npz"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    code, err = merge(monkeypatch, capsys, "occ3d", "--verify", "--workers", "1")
    assert code == 2 and str(corrupt) in err.strip().splitlines()[-1] and "also 1 problems" in err
    assert f"verified 11 samples: 1 problems: {corrupt}" in err
