"""create-infos over shards (`occprep shard`, then `create-infos --shards --engine`): the gathered pickles
equal create-infos' byte for byte, for every target, whatever engine runs the scene groups and whichever
worker dies; `--sharded-output` holds the same infos; broken shards are one-line errors."""

import json
import random
import shutil
from pathlib import Path

import pytest

from conftest import NuScenesData
from helpers import ElsewhereEngine, KillingEngine, assert_same, digests, run_cli, working_directory
from occprep.create import CreateOptions, create_infos
from occprep.engines import DaskEngine, LocalEngine
from occprep.inspection import load_infos
from occprep.pickles import load_pickle
from occprep.reporting import Reporter
from occprep.shards.files import ROUTED_TABLES, marker_path, part_path
from occprep.shards.write import shard_version
from occprep.sharded import create_infos_from_shards
from occprep.synth import synthesize
from occprep.targets import targets

ALL = tuple(targets())
QUIET = Reporter("test", quiet=True)


def pickles(folder: Path) -> dict:
    """Relative path -> digest of every pickle under `folder`."""
    return digests(folder, "*.pkl")


def single(data, out: Path, version: str = "v1.0-mini") -> dict:
    create_infos(str(data.root), out, "nuscenes", version, data.canbus,
                 options=CreateOptions(targets=ALL, file_check=False))
    return pickles(out)


def gathered(data, shards: Path, out: Path, engine, version: str = "v1.0-mini") -> dict:
    create_infos_from_shards(shards, str(data.root), out, "nuscenes", version, engine,
                             options=CreateOptions(targets=ALL, file_check=False))
    return pickles(out)


@pytest.fixture(scope="module")
def shuffled(generated_mini, tmp_path_factory):
    """The generated mini with its routed tables' records in shuffled order (samples of different scenes
    interleave, as nothing in the format forbids), sharded one scene per bucket: three scene groups."""
    base = tmp_path_factory.mktemp("shuffled")
    data = generated_mini.copy_to(base)
    order = random.Random(1)
    for name in ROUTED_TABLES:
        path = data.root / data.version / f"{name}.json"
        records = json.loads(path.read_text())
        order.shuffle(records)
        path.write_text(json.dumps(records))
    shards = base / "shards"
    shard_version(data.root, data.version, data.canbus, shards, scenes_per_bucket=1, reporter=QUIET)
    return data, shards


@pytest.fixture(scope="module")
def single_out(shuffled, tmp_path_factory) -> Path:
    """The folder of all targets' pickles of create-infos on the shuffled tables."""
    out = tmp_path_factory.mktemp("single")
    single(shuffled[0], out)
    return out


@pytest.fixture(scope="module")
def expected(single_out) -> dict:
    return pickles(single_out)


@pytest.mark.parametrize("engine", [LocalEngine(1, QUIET), DaskEngine("synchronous", 1, QUIET)],
                         ids=["local", "dask-synchronous"])
def test_real_scene_gathers_to_the_same_bytes(real_mini, tmp_path, engine):
    shard_version(real_mini.root, "v1.0-mini", real_mini.canbus, tmp_path / "shards", reporter=QUIET)
    want = single(real_mini, tmp_path / "single")
    assert len(want) == 16
    assert gathered(real_mini, tmp_path / "shards", tmp_path / "gathered", engine) == want


def test_scene_groups_in_local_processes(shuffled, expected, tmp_path):
    assert len(expected) == 16
    assert gathered(*shuffled, tmp_path / "out", LocalEngine(2, QUIET)) == expected


def test_test_set_without_annotations_or_can_bus(tmp_path):
    """v1.0-test: no annotations, no CAN bus files; each scene its own group."""
    synthesize(tmp_path, "v1.0-test", scenes=3, samples_per_scene=5, occ=(), blobs="none")
    (tmp_path / "can_bus").mkdir(exist_ok=True)
    data = NuScenesData(tmp_path / "nuscenes", tmp_path, "v1.0-test")
    shard_version(data.root, data.version, data.canbus, tmp_path / "shards", scenes_per_bucket=1, reporter=QUIET)
    want = single(data, tmp_path / "single", "v1.0-test")
    assert len(want) == 8
    assert gathered(data, tmp_path / "shards", tmp_path / "out", LocalEngine(2, QUIET), "v1.0-test") == want


def test_dask_synchronous_scheduler(shuffled, expected, tmp_path):
    assert gathered(*shuffled, tmp_path / "out", DaskEngine("synchronous", 1, QUIET)) == expected


def test_killed_local_worker_is_retried(shuffled, expected, tmp_path):
    engine = KillingEngine(LocalEngine(2, QUIET), tmp_path / "died")
    assert gathered(*shuffled, tmp_path / "out", engine) == expected
    assert (tmp_path / "died").exists()


def test_dask_local_cluster_with_a_killed_worker(shuffled, expected, tmp_path):
    """Two worker processes on a LocalCluster; the first task kills its worker, Dask runs it again."""
    engine = KillingEngine(DaskEngine(None, 2, QUIET), tmp_path / "died")
    assert gathered(*shuffled, tmp_path / "out", engine) == expected
    assert (tmp_path / "died").exists()


def test_sharded_output_holds_the_same_infos(shuffled, single_out, tmp_path, monkeypatch, capsys):
    data, shards = shuffled
    code, _, err = run_cli(["create-infos", "--shards", shards, "--version", "v1.0-mini", "--root-path", data.root,
                            "--out-dir", tmp_path, "--no-file-check", "--sharded-output", "--target", ",".join(ALL),
                            "--quiet"], monkeypatch, capsys)
    assert code == 0, err
    for name in pickles(single_out):
        index = tmp_path / Path(name).with_suffix(".index.json")
        joined, file_name, parts = load_infos(index)
        want = load_pickle(single_out / name)
        key = "infos" if "infos" in want else "data_list"
        assert file_name == Path(name).name and parts == len(json.loads(index.read_text())["parts"]) >= 1
        assert_same(sorted(map(without_position, joined[key]), key=token_of),
                    sorted(map(without_position, want[key]), key=token_of), name, tolerance=0)
    code, out, _ = run_cli(["inspect", tmp_path / "nuscenes_infos_temporal_train.index.json"], monkeypatch, capsys)
    assert code == 0 and "index of 2 pickles" in out and "target      bevformer" in out


def token_of(info: dict) -> str:
    return info["token"]


def without_position(info: dict) -> dict:
    """An info without mmdet3d 1.x's `sample_idx` (its position in its own file's data_list)."""
    return {key: value for key, value in info.items() if key != "sample_idx"}


@pytest.mark.parametrize("damage", ["truncated", "missing", "another run"])
def test_broken_shard_is_a_one_line_error(shuffled, tmp_path, damage, monkeypatch, capsys):
    data, shards = shuffled
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    part = part_path(copy, "v1.0-mini", "sample_data", 1)
    if damage == "missing":
        part.unlink()
    elif damage == "truncated":
        part.write_bytes(part.read_bytes()[:100])
    else:  # the same bucket of shards made with other buckets
        shard_version(data.root, data.version, data.canbus, tmp_path / "other", scenes_per_bucket=2, reporter=QUIET)
        shutil.copy(part_path(tmp_path / "other", "v1.0-mini", "sample_data", 1), part)
    code, _, err = run_cli(["create-infos", "--shards", copy, "--version", "v1.0-mini", "--root-path", data.root,
                            "--out-dir", tmp_path / "out", "--no-file-check", "--quiet"], monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert str(part) in lines[0] and "scenes scene-" in lines[0] and "occprep shard" in lines[0]
    assert ("from another shard run" in lines[0]) == (damage == "another run")
    assert not list(tmp_path.rglob("*.pkl"))


def test_unfinished_shards_are_refused(shuffled, tmp_path, monkeypatch, capsys):
    data, shards = shuffled
    shutil.copytree(shards, tmp_path / "shards")
    marker_path(tmp_path / "shards", "v1.0-mini").unlink()
    code, _, err = run_cli(["create-infos", "--shards", tmp_path / "shards", "--version", "v1.0-mini",
                            "--root-path", data.root, "--out-dir", tmp_path / "out", "--quiet"], monkeypatch, capsys)
    assert code == 2 and "_complete.json" in err and "interrupted" in err


def test_engine_flags_need_shards(monkeypatch, capsys):
    code, _, err = run_cli(["create-infos", "--engine", "dask"], monkeypatch, capsys)
    assert code == 2 and err.strip() == "error: --engine needs --shards (the map over scene groups runs on shards: " \
                                        "occprep shard)"


def test_python_api_names_the_entry_points():
    """What the engine calls is importable from the package, each with its documentation."""
    import occprep

    for name in occprep.__all__:
        assert getattr(occprep, name).__doc__, name
    with pytest.raises(AttributeError):
        occprep.no_such_thing  # noqa: B018


def test_keyframe_file_check_on_the_engine(tmp_path):
    """With the sensor files present but one keyframe image gone, both ways leave the same scene out (one
    listing per folder, on the engine for shards) and write the same bytes."""
    synthesize(tmp_path, "v1.0-mini", scenes=3, samples_per_scene=5, occ=(), blobs="empty")
    data = NuScenesData(tmp_path / "nuscenes", tmp_path)
    records = json.loads((data.root / "v1.0-mini" / "sample_data.json").read_text())
    gone = next(r["filename"] for r in records if r["is_key_frame"] and "CAM_BACK/" in r["filename"])
    (data.root / gone).unlink()
    shard_version(data.root, data.version, data.canbus, tmp_path / "shards", scenes_per_bucket=1, reporter=QUIET)
    options = CreateOptions(targets=("bevformer",))
    want, _ = create_infos(str(data.root), tmp_path / "single", "nuscenes", "v1.0-mini", data.canbus, options=options)
    got, _ = create_infos_from_shards(tmp_path / "shards", str(data.root), tmp_path / "gathered", "nuscenes",
                                      "v1.0-mini", LocalEngine(2, QUIET), options=options)
    left_out = want["versions"][0]["scenes_left_out"]
    assert len(left_out) == 1 and gone in next(iter(left_out.values()))
    assert got["versions"][0]["scenes_left_out"] == left_out
    assert pickles(tmp_path / "gathered") == pickles(tmp_path / "single")


def test_relative_paths_from_workers_in_another_folder(generated_mini, tmp_path):
    """Relative --shards, --root-path and --out-dir, workers in another working directory, file check on."""
    synthesize(tmp_path / "data", "v1.0-mini", scenes=2, samples_per_scene=5, occ=(), blobs="empty")
    (tmp_path / "elsewhere").mkdir()
    with working_directory(tmp_path):
        shard_version(Path("data/nuscenes"), "v1.0-mini", Path("data"), Path("shards"), scenes_per_bucket=1,
                      reporter=QUIET)
        options = CreateOptions(targets=("bevformer", "vad"))
        create_infos("data/nuscenes", Path("single"), "nuscenes", "v1.0-mini", Path("data"), options=options)
        for sharded_output in (False, True):
            create_infos_from_shards(Path("shards"), "data/nuscenes", Path(f"out-{sharded_output}"), "nuscenes",
                                     "v1.0-mini", ElsewhereEngine(LocalEngine(2, QUIET), tmp_path / "elsewhere"),
                                     options=options, sharded_output=sharded_output)
    assert pickles(tmp_path / "out-False") == pickles(tmp_path / "single")
    joined, _, _ = load_infos(tmp_path / "out-True" / "nuscenes_infos_temporal_train.index.json")
    want = load_pickle(tmp_path / "single" / "nuscenes_infos_temporal_train.pkl")
    assert_same(sorted(joined["infos"], key=token_of), sorted(want["infos"], key=token_of), "train", tolerance=0)
    assert not list((tmp_path / "elsewhere").iterdir())


@pytest.mark.parametrize("args, message", [
    (["--engine", "dask", "--scheduler", "foo"], "--scheduler foo: no Dask scheduler reached there"),
    (["--format", "solo"], "--format does not apply to --shards"),
    (["--version", "v1.0-mini-typo"], "use --version v1.0-mini"),
])
def test_shard_flag_mistakes(shuffled, tmp_path, monkeypatch, capsys, args, message):
    data, shards = shuffled
    command = ["create-infos", "--shards", shards, "--version", "v1.0-mini", "--root-path", data.root,
               "--out-dir", tmp_path, "--no-file-check", "--quiet"]
    code, _, err = run_cli(command + args, monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_version_folder_given_as_shards(shuffled, tmp_path, monkeypatch, capsys):
    data, shards = shuffled
    code, _, err = run_cli(["create-infos", "--shards", shards / "v1.0-mini", "--version", "v1.0-mini",
                            "--root-path", data.root, "--out-dir", tmp_path, "--quiet"], monkeypatch, capsys)
    assert code == 2 and f"use --shards {shards} --version v1.0-mini" in err


def test_empty_split_index_and_index_given_as_pickle(real_mini, tmp_path, monkeypatch, capsys):
    """The real scene is in mini_val: train's index names one empty pickle; inspect says 0 samples; commands
    that take pickles say what an index is."""
    shard_version(real_mini.root, "v1.0-mini", real_mini.canbus, tmp_path / "shards", reporter=QUIET)
    create_infos_from_shards(tmp_path / "shards", str(real_mini.root), tmp_path / "out", "nuscenes", "v1.0-mini",
                             LocalEngine(1, QUIET), options=CreateOptions(file_check=False), sharded_output=True)
    index = tmp_path / "out" / "nuscenes_infos_temporal_train.index.json"
    code, out, err = run_cli(["inspect", index], monkeypatch, capsys)
    assert code == 0 and "samples     0" in out, err
    code, _, err = run_cli(["show", index], monkeypatch, capsys)
    assert code == 2 and "only occprep inspect reads an index" in err


def test_umbrella_version_builds_every_sharded_member(tmp_path):
    """--version v1.0 with shards of v1.0-trainval and v1.0-test: both, as create-infos does from the tables."""
    synthesize(tmp_path / "tv", "v1.0-trainval", scenes=2, samples_per_scene=5, occ=(), blobs="none")
    synthesize(tmp_path / "test", "v1.0-test", scenes=1, samples_per_scene=5, occ=(), blobs="none")
    shutil.copytree(tmp_path / "test" / "nuscenes" / "v1.0-test", tmp_path / "tv" / "nuscenes" / "v1.0-test")
    data = NuScenesData(tmp_path / "tv" / "nuscenes", tmp_path / "tv", "v1.0-trainval")
    for version in ("v1.0-trainval", "v1.0-test"):
        shard_version(data.root, version, data.canbus, tmp_path / "shards", reporter=QUIET)
    want = single(data, tmp_path / "single", "v1.0")
    assert len(want) == 24  # eight targets, train, val and test
    assert gathered(data, tmp_path / "shards", tmp_path / "out", LocalEngine(1, QUIET), "v1.0") == want
