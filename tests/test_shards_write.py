"""`occprep shard` (occprep.shards.write): routing, Parquet layout, determinism, re-runs, atomicity, errors."""

import io
import json
import os
import random
import re
import shutil
import warnings
from pathlib import Path

import msgspec
import pytest
from tqdm import tqdm

pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("ijson")

from helpers import run_cli  # noqa: E402
from occprep.errors import OccprepError  # noqa: E402
from occprep.shards import write  # noqa: E402
from occprep.shards.files import (CAN_BUS_KINDS, FORMAT, GLOBAL_TABLES, ID_KEY, INDEX_COLUMNS, MARKER,  # noqa: E402
                                  ROUTED_TABLES, Manifest, global_table_path, index_path, marker_path, part_path,
                                  row_count_columns, version_dir)
from occprep.shards.write import shard_version  # noqa: E402
from occprep.synth import synthesize  # noqa: E402
from occprep.tables import TABLE_TYPES, read_table  # noqa: E402

VERSION = "v1.0-mini"
PER_BUCKET = 3
"""Four scenes: bucket 0 holds three, bucket 1 one."""
BLACKLISTED = "scene-0161"
"""A name in the nuScenes CAN bus blacklist, given to the third scene (its CAN bus files are there anyway)."""


class Data:
    """A dataset on disk: `root/<version>/` holds the tables, `canbus/can_bus/` the CAN bus files."""

    def __init__(self, root: Path, canbus: Path, version: str = VERSION) -> None:
        self.root, self.canbus, self.version = root, canbus, version

    @property
    def tables(self) -> Path:
        return self.root / self.version

    def table(self, name: str) -> list:
        return json.loads((self.tables / f"{name}.json").read_text())

    def write_table(self, name: str, records: list) -> None:
        (self.tables / f"{name}.json").write_text(json.dumps(records))

    def copy_to(self, base: Path) -> "Data":
        shutil.copytree(self.tables, base / "nuscenes" / self.version)
        shutil.copytree(self.canbus / "can_bus", base / "can_bus")
        return Data(base / "nuscenes", base, self.version)

    def shard(self, out: Path, **kwargs):
        return shard_version(self.root, self.version, self.canbus, out, **kwargs)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Data:
    """Four generated mini scenes whose routed tables are shuffled (records arrive out of scene order), the
    second without CAN bus files, the third renamed to a blacklisted scene that has CAN bus files; plus an
    instance no annotation names and an ego pose no sample_data names. Read-only: copy it to change it."""
    base = tmp_path_factory.mktemp("shards-synth")
    synthesize(base, VERSION, scenes=4, samples_per_scene=5, occ=(), blobs="none", boxes_per_sample=4)
    data = Data(base / "nuscenes", base)
    scenes = data.table("scene")
    for kind in CAN_BUS_KINDS:
        os.remove(base / "can_bus" / f"{scenes[1]['name']}_{kind}.json")
        os.rename(base / "can_bus" / f"{scenes[2]['name']}_{kind}.json", base / "can_bus" / f"{BLACKLISTED}_{kind}.json")
    scenes[2]["name"] = BLACKLISTED
    data.write_table("scene", scenes)
    shuffle = random.Random(0)
    for name in ROUTED_TABLES:
        records = data.table(name)
        shuffle.shuffle(records)
        if name == "instance":
            records.insert(3, {**records[0], "token": "f" * 32})
        if name == "ego_pose":
            records.insert(5, {**records[0], "token": "e" * 32})
        data.write_table(name, records)
    return data


@pytest.fixture(scope="module")
def synth_shards(synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards-out")
    manifest, skipped = synth.shard(out, scenes_per_bucket=PER_BUCKET)
    assert not skipped
    return out


def row_groups(shards: Path, version: str, table: str, bucket: int) -> list:
    """The rows (dicts) of each row group of a part file."""
    parquet = pq.ParquetFile(part_path(shards, version, table, bucket))
    return [parquet.read_row_group(i).to_pylist() for i in range(parquet.num_row_groups)]


def expected_scenes(data: Data) -> dict:
    """Table -> the scene row of each record in file order (None: reaches no scene), routed independently."""
    scene_of = {s["token"]: row for row, s in enumerate(data.table("scene"))}
    sample = {s["token"]: scene_of[s["scene_token"]] for s in data.table("sample")}
    annotations = data.table("sample_annotation")
    instance = {}
    for a in annotations:
        instance.setdefault(a["instance_token"], sample[a["sample_token"]])
    readings = data.table("sample_data")
    pose = {}
    for r in readings:
        pose.setdefault(r["ego_pose_token"], sample[r["sample_token"]])
    return {"sample": [scene_of[s["scene_token"]] for s in data.table("sample")],
            "sample_annotation": [sample[a["sample_token"]] for a in annotations],
            "instance": [instance.get(i["token"]) for i in data.table("instance")],
            "sample_data": [sample[r["sample_token"]] for r in readings],
            "ego_pose": [pose.get(p["token"]) for p in data.table("ego_pose")]}


def assert_routed(data: Data, shards: Path, per_bucket: int) -> None:
    """Every routed record once, in its scene's row group, in file order, `_row` its position, fields equal."""
    scenes = len(data.table("scene"))
    buckets = -(-scenes // per_bucket)
    for table, scene_rows in expected_scenes(data).items():
        records = msgspec.to_builtins(read_table(data.tables, table))
        seen = []
        for bucket in range(buckets):
            groups = row_groups(shards, data.version, table, bucket)
            assert len(groups) == min(per_bucket, scenes - bucket * per_bucket), table
            for position, rows in enumerate(groups):
                scene = bucket * per_bucket + position
                positions = [row.pop("_row") for row in rows]
                assert positions == sorted(positions), table
                assert all(scene_rows[p] == scene for p in positions), table
                assert rows == [records[p] for p in positions], table
                seen += positions
        assert sorted(seen) == [p for p, scene in enumerate(scene_rows) if scene is not None], table


def test_records_reach_their_scenes(synth, synth_shards):
    assert_routed(synth, synth_shards, PER_BUCKET)
    manifest = msgspec.json.decode(marker_path(synth_shards, VERSION).read_bytes(), type=Manifest)
    assert manifest.unrouted == {"instance": 1, "ego_pose": 1}
    assert (manifest.format, manifest.scenes, manifest.buckets, manifest.scenes_per_bucket) == (FORMAT, 4, 2, PER_BUCKET)
    counts = {table: sum(s is not None for s in scenes) for table, scenes in expected_scenes(synth).items()}
    assert manifest.rows == {**counts, "can_bus": len(CAN_BUS_KINDS) * 2}
    assert manifest.canbus == os.path.abspath(synth.canbus)
    assert set(manifest.inputs) == ({str(synth.tables / f"{name}.json") for name in TABLE_TYPES}
                                    | {str(p) for p in (synth.canbus / "can_bus").glob("*.json")
                                       if p.name.split("_")[0] not in (BLACKLISTED,) and not p.name.endswith("_meta.json")})


def test_schema_types(synth_shards):
    schema = pq.read_schema(part_path(synth_shards, VERSION, "sample_annotation", 0))
    assert [(f.name, str(f.type)) for f in schema] == [
        ("token", "string"), ("sample_token", "string"), ("instance_token", "string"), ("visibility_token", "string"),
        ("attribute_tokens", "list<element: string>"), ("translation", "list<element: double>"),
        ("size", "list<element: double>"), ("rotation", "list<element: double>"), ("prev", "string"),
        ("next", "string"), ("num_lidar_pts", "int64"), ("num_radar_pts", "int64"), ("_row", "int64")]
    schema = pq.read_schema(part_path(synth_shards, VERSION, "sample_data", 1))
    assert str(schema.field("is_key_frame").type) == "bool"


def test_global_tables_are_verbatim(synth, synth_shards):
    for name in GLOBAL_TABLES:
        assert global_table_path(synth_shards, VERSION, name).read_bytes() == (synth.tables / f"{name}.json").read_bytes()


def test_index(synth, synth_shards):
    index = pq.read_table(index_path(synth_shards, VERSION))
    assert index.column_names == [*INDEX_COLUMNS, *row_count_columns()]
    assert [str(t) for t in index.schema.types[:5]] == ["int64", "string", "string", "int32", "int32"]
    scenes = synth.table("scene")
    rows = index.to_pylist()
    assert [(r["scene_row"], r["token"], r["name"], r["bucket"], r["row_group"]) for r in rows] == \
        [(i, s["token"], s["name"], i // PER_BUCKET, i % PER_BUCKET) for i, s in enumerate(scenes)]
    for table in (*ROUTED_TABLES, "can_bus"):
        groups = [g for bucket in range(2) for g in row_groups(synth_shards, VERSION, table, bucket)]
        assert [r[f"rows_{table}"] for r in rows] == [len(g) for g in groups], table


def test_can_bus_rows(synth, synth_shards):
    scenes = [s["name"] for s in synth.table("scene")]
    groups = [g for bucket in range(2) for g in row_groups(synth_shards, VERSION, "can_bus", bucket)]
    assert [len(g) for g in groups] == [2, 0, 0, 2]  # scenes[1] has no files, scenes[2] is blacklisted
    for name, group in zip(scenes, groups):
        for row, kind in zip(group, CAN_BUS_KINDS):
            assert (row["scene_name"], row["kind"]) == (name, kind)
            assert row["content"] == (synth.canbus / "can_bus" / f"{name}_{kind}.json").read_bytes()


def test_without_canbus(synth, tmp_path):
    manifest, _ = shard_version(synth.root, VERSION, None, tmp_path, scenes_per_bucket=PER_BUCKET)
    assert manifest.canbus is None and manifest.rows["can_bus"] == 0
    assert [len(g) for g in row_groups(tmp_path, VERSION, "can_bus", 0)] == [0, 0, 0]
    assert not any("can_bus" in path for path in manifest.inputs)


def test_real_mini_scene(real_mini, tmp_path):
    data = Data(real_mini.root, real_mini.canbus)
    manifest, _ = data.shard(tmp_path)
    assert_routed(data, tmp_path, 64)
    assert manifest.unrouted == {"instance": 0, "ego_pose": 0}
    (scene,) = data.table("scene")
    rows = row_groups(tmp_path, VERSION, "can_bus", 0)[0]
    assert [(r["scene_name"], r["kind"]) for r in rows] == [(scene["name"], kind) for kind in CAN_BUS_KINDS]
    assert [r["content"] for r in rows] == [(data.canbus / "can_bus" / f"{scene['name']}_{kind}.json").read_bytes()
                                            for kind in CAN_BUS_KINDS]


def folder_bytes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_deterministic(synth, synth_shards, tmp_path):
    synth.shard(tmp_path, scenes_per_bucket=PER_BUCKET)
    assert folder_bytes(version_dir(tmp_path, VERSION)) == folder_bytes(version_dir(synth_shards, VERSION))


def read_manifest(shards: Path) -> Manifest:
    return msgspec.json.decode(marker_path(shards, VERSION).read_bytes(), type=Manifest)


def test_outputs_list_every_file_but_the_marker(synth_shards):
    files = {name: len(content) for name, content in folder_bytes(version_dir(synth_shards, VERSION)).items()
             if name != MARKER}
    assert read_manifest(synth_shards).outputs == files
    assert "index.parquet" in files and "tables/scene.json" in files and "can_bus/part-00001.parquet" in files


def test_every_parquet_file_carries_the_run_id(synth, synth_shards, tmp_path):
    manifest = read_manifest(synth_shards)
    assert re.fullmatch("[0-9a-f]{64}", manifest.id)
    parquet = sorted(version_dir(synth_shards, VERSION).rglob("*.parquet"))
    assert len(parquet) == 1 + 2 * (len(ROUTED_TABLES) + 1)
    assert {pq.read_schema(path).metadata[ID_KEY] for path in parquet} == {manifest.id.encode()}
    other, _ = synth.shard(tmp_path, scenes_per_bucket=2)  # another run: another id
    assert other.id != manifest.id
    assert pq.read_schema(index_path(tmp_path, VERSION)).metadata[ID_KEY] == other.id.encode()


def test_token_spill_to_sqlite_gives_the_same_files(synth, synth_shards, tmp_path, monkeypatch):
    lookups = []
    get = write._TokenMap.get
    monkeypatch.setattr(write._TokenMap, "get", lambda self, tokens: lookups.append(self._db is not None) or get(self, tokens))
    synth.shard(tmp_path, scenes_per_bucket=PER_BUCKET, memory_tokens=1)
    assert lookups and all(lookups)
    assert (tmp_path / VERSION).is_dir() and not list(tmp_path.glob(".*"))
    assert folder_bytes(version_dir(tmp_path, VERSION)) == folder_bytes(version_dir(synth_shards, VERSION))


def test_token_map_keeps_first_row(tmp_path):
    tokens = write._TokenMap(tmp_path / "map.sqlite", 2)
    tokens.add(["a", "b", "c", "a"], [1, 2, 3, 4])
    tokens.add(["c", "d"], [5, 6])
    assert tokens.get(["a", "b", "c", "d", "x"]) == [1, 2, 3, 6, -1]
    tokens.close()


def test_small_chunks_and_buffers_give_the_same_files(synth, synth_shards, tmp_path, monkeypatch):
    monkeypatch.setattr(write, "BATCH", 7)
    monkeypatch.setattr(write, "CHUNK", 5)
    monkeypatch.setattr(write, "BUFFERED", 11)
    synth.shard(tmp_path, scenes_per_bucket=PER_BUCKET)
    assert folder_bytes(version_dir(tmp_path, VERSION)) == folder_bytes(version_dir(synth_shards, VERSION))


def test_rerun_skips_unchanged_and_rebuilds_changed(synth, tmp_path):
    data = synth.copy_to(tmp_path / "data")
    out = tmp_path / "shards"
    assert data.shard(out, scenes_per_bucket=PER_BUCKET)[1] is False
    marker = marker_path(out, VERSION)
    written = marker.stat().st_mtime_ns
    manifest, skipped = data.shard(out, scenes_per_bucket=PER_BUCKET)
    assert skipped and marker.stat().st_mtime_ns == written and manifest.scenes == 4
    assert data.shard(out, scenes_per_bucket=2)[1] is False  # other buckets
    assert data.shard(out, scenes_per_bucket=2)[1] is True
    assert shard_version(data.root, VERSION, None, out, scenes_per_bucket=2)[1] is False  # no CAN bus
    assert data.shard(out, scenes_per_bucket=2)[1] is False
    pose = data.tables / "ego_pose.json"
    stat = pose.stat()
    os.utime(pose, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # same size, other mtime
    assert data.shard(out, scenes_per_bucket=2)[1] is False
    assert data.shard(out, scenes_per_bucket=2)[1] is True
    name = data.table("scene")[1]["name"]  # a scene without CAN bus gets a file
    shutil.copyfile(data.canbus / "can_bus" / f"{data.table('scene')[0]['name']}_pose.json",
                    data.canbus / "can_bus" / f"{name}_pose.json")
    manifest, skipped = data.shard(out, scenes_per_bucket=2)
    assert not skipped and manifest.rows["can_bus"] == 5
    with open(data.canbus / "can_bus" / f"{name}_pose.json", "ab") as handle:  # other size
        handle.write(b" ")
    assert data.shard(out, scenes_per_bucket=2)[1] is False
    assert not list(out.glob(".*"))


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_rerun_repairs_a_damaged_part(synth, synth_shards, tmp_path, damage):
    shutil.copytree(version_dir(synth_shards, VERSION), version_dir(tmp_path, VERSION))
    part = part_path(tmp_path, VERSION, "sample_data", 1)
    if damage == "delete":
        part.unlink()
    else:
        part.write_bytes(part.read_bytes()[:100])
    assert synth.shard(tmp_path, scenes_per_bucket=PER_BUCKET)[1] is False
    assert folder_bytes(version_dir(tmp_path, VERSION)) == folder_bytes(version_dir(synth_shards, VERSION))
    assert synth.shard(tmp_path, scenes_per_bucket=PER_BUCKET)[1] is True


def test_force_rebuilds_unchanged_inputs(synth, synth_shards, tmp_path, monkeypatch, capsys):
    shutil.copytree(version_dir(synth_shards, VERSION), version_dir(tmp_path, VERSION))
    marker = marker_path(tmp_path, VERSION)
    os.utime(marker, ns=(0, 0))
    assert synth.shard(tmp_path, scenes_per_bucket=PER_BUCKET, force=True)[1] is False
    assert marker.stat().st_mtime_ns != 0
    assert folder_bytes(version_dir(tmp_path, VERSION)) == folder_bytes(version_dir(synth_shards, VERSION))
    code, _, err = shard_cli(synth, tmp_path, monkeypatch, capsys)
    assert code == 0 and "skipped: unchanged inputs; --force rebuilds" in err, err
    code, _, err = shard_cli(synth, tmp_path, monkeypatch, capsys, "--force")
    assert code == 0 and "skipped" not in err, err


def test_folder_without_marker_is_rebuilt(synth, synth_shards, tmp_path):
    shutil.copytree(version_dir(synth_shards, VERSION), version_dir(tmp_path, VERSION))
    marker_path(tmp_path, VERSION).unlink()
    part_path(tmp_path, VERSION, "sample", 0).write_bytes(b"partial")
    manifest, skipped = synth.shard(tmp_path, scenes_per_bucket=PER_BUCKET)
    assert not skipped
    assert folder_bytes(version_dir(tmp_path, VERSION)) == folder_bytes(version_dir(synth_shards, VERSION))


@pytest.mark.parametrize("failure", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_interrupted_run_keeps_the_previous_shards(synth, tmp_path, monkeypatch, failure):
    data = synth.copy_to(tmp_path / "data")
    out = tmp_path / "shards"
    data.shard(out, scenes_per_bucket=PER_BUCKET)
    before = folder_bytes(version_dir(out, VERSION))
    os.utime(data.tables / "sample.json", ns=(0, 0))

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(write, "_write_can_bus", fail)  # after the routed tables' parts are written
    with pytest.raises(type(failure)):
        data.shard(out, scenes_per_bucket=PER_BUCKET)
    assert folder_bytes(version_dir(out, VERSION)) == before
    assert sorted(p.name for p in out.iterdir()) == [VERSION]


def test_replace_failure_restores_the_old_folder(synth, tmp_path, monkeypatch):
    data = synth.copy_to(tmp_path / "data")
    out = tmp_path / "shards"
    data.shard(out, scenes_per_bucket=PER_BUCKET)
    before = folder_bytes(version_dir(out, VERSION))
    os.utime(data.tables / "sample.json", ns=(0, 0))
    rename = os.rename

    def second_fails(source, target):
        if ".tmp-" in str(source):
            raise OSError(28, "No space left on device")
        rename(source, target)

    monkeypatch.setattr(write.os, "rename", second_fails)
    with pytest.raises(OccprepError, match="cannot replace it"):
        data.shard(out, scenes_per_bucket=PER_BUCKET)
    assert folder_bytes(version_dir(out, VERSION)) == before
    assert sorted(p.name for p in out.iterdir()) == [VERSION]


@pytest.mark.parametrize("failure", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failed_run_removes_the_out_folder_it_created(synth, tmp_path, monkeypatch, failure):
    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(write, "_write_can_bus", fail)
    with pytest.raises(type(failure)):
        synth.shard(tmp_path / "shards", scenes_per_bucket=PER_BUCKET)
    assert not (tmp_path / "shards").exists()
    (tmp_path / "given").mkdir()  # an --out that was there stays
    with pytest.raises(type(failure)):
        synth.shard(tmp_path / "given", scenes_per_bucket=PER_BUCKET)
    assert (tmp_path / "given").is_dir() and not list((tmp_path / "given").iterdir())


def shard_cli(data: Data, out: Path, monkeypatch, capsys, *extra):
    return run_cli(["shard", "--root-path", data.root, "--version", data.version, "--canbus", data.canbus,
                    "--out", out, "--scenes-per-bucket", PER_BUCKET, *extra], monkeypatch, capsys)


def one_line_error(code: int, err: str, *parts: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in parts:
        assert part in lines[0], err


def test_cli_summary_and_report(synth, tmp_path, monkeypatch, capsys):
    report = tmp_path / "report.json"
    code, out, err = shard_cli(synth, tmp_path / "shards", monkeypatch, capsys, "--report", report)
    assert code == 0, err
    assert "4 scenes in 2 bucket(s) of 3" in err and "unrouted: instance 1, ego_pose 1" in err
    summary = json.loads(report.read_text())
    assert summary["skipped"] is False and summary["rows"]["can_bus"] == 4 and "route sample_data" in summary["stages_s"]
    code, out, err = shard_cli(synth, tmp_path / "shards", monkeypatch, capsys, "-q")
    assert code == 0 and err == ""
    code, out, err = shard_cli(synth, tmp_path / "shards", monkeypatch, capsys)
    assert code == 0 and "skipped: unchanged inputs" in err


def test_cli_without_the_extra(synth, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(write, "pa", None)
    code, _, err = shard_cli(synth, tmp_path, monkeypatch, capsys)
    one_line_error(code, err, "pip install 'occprep[shards]'")


@pytest.mark.parametrize("table, content, parts", [
    ("sample_data", lambda text: text[:len(text) // 2], ["sample_data.json: malformed JSON after ", " records: parse error"]),
    ("ego_pose", lambda text: text.replace('"timestamp": ', '"timestamp": NaN, "x": ', 1),
     ["ego_pose.json: malformed JSON", "NaN and Infinity are not JSON"]),
    ("sample_annotation", lambda text: text.replace('"num_lidar_pts": ', '"num_lidar_pts": "many", "x": ', 1),
     ["sample_annotation.json: record 0 (0-based)", "Expected `int`, got `str`", "num_lidar_pts"]),
    ("instance", lambda text: '{"token": 1}', ["instance.json: malformed JSON: a table is a list of records"]),
    ("sample", lambda text: "", ["sample.json: malformed JSON", "an empty file"]),
])
def test_malformed_tables(synth, tmp_path, monkeypatch, capsys, table, content, parts):
    data = synth.copy_to(tmp_path / "data")
    path = data.tables / f"{table}.json"
    path.write_text(content(json.dumps(data.table(table))))
    code, _, err = shard_cli(data, tmp_path / "shards", monkeypatch, capsys, "-q")
    one_line_error(code, err, str(path), *parts)
    assert not (tmp_path / "shards").exists()


def test_bad_record_is_numbered(synth, tmp_path):
    data = synth.copy_to(tmp_path / "data")
    records = data.table("sample_data")
    records[10]["is_key_frame"] = "yes"
    data.write_table("sample_data", records)
    with pytest.raises(OccprepError, match=r"sample_data.json: record 10 \(0-based\): Expected `bool`.*is_key_frame"):
        data.shard(tmp_path / "shards", scenes_per_bucket=PER_BUCKET)


def test_unresolved_sample_token(synth, tmp_path, monkeypatch, capsys):
    data = synth.copy_to(tmp_path / "data")
    records = data.table("sample_data")
    records[7]["sample_token"] = "0" * 32
    data.write_table("sample_data", records)
    code, _, err = shard_cli(data, tmp_path / "shards", monkeypatch, capsys, "-q")
    one_line_error(code, err, f"sample_data.sample_token '{'0' * 32}' of record '{records[7]['token']}'",
                   "does not resolve")


def test_missing_inputs(synth, tmp_path, monkeypatch, capsys):
    data = synth.copy_to(tmp_path / "data")
    code, _, err = run_cli(["shard", "--root-path", data.root, "--version", "v1.0-trainval", "--canbus", data.canbus,
                            "--out", tmp_path / "s"], monkeypatch, capsys)
    one_line_error(code, err, "--version v1.0-trainval: no folder", "use --version v1.0-mini")
    code, _, err = run_cli(["shard", "--root-path", data.root, "--version", VERSION, "--canbus", tmp_path / "nowhere",
                            "--out", tmp_path / "s"], monkeypatch, capsys)
    one_line_error(code, err, f"--canbus {tmp_path / 'nowhere'}")
    (data.tables / "instance.json").unlink()
    code, _, err = shard_cli(data, tmp_path / "s", monkeypatch, capsys, "-q")
    one_line_error(code, err, "no instance.json")
    assert not (tmp_path / "s").exists()


def test_canbus_flag_mix_up_is_corrected(synth, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(["shard", "--root-path", synth.root, "--version", VERSION, "--canbus",
                            synth.canbus / "can_bus", "--out", tmp_path], monkeypatch, capsys)
    assert code == 0 and f"used {synth.canbus}" in err, err
    manifest = msgspec.json.decode(marker_path(tmp_path, VERSION).read_bytes(), type=Manifest)
    assert manifest.canbus == str(synth.canbus) and manifest.rows["can_bus"] == 4


def test_never_replaces_the_dataset_version_folder(synth, tmp_path, monkeypatch, capsys):
    data = synth.copy_to(tmp_path / "data")
    before = folder_bytes(data.tables)
    code, _, err = shard_cli(data, data.root, monkeypatch, capsys)
    one_line_error(code, err, f"{data.tables} is not a shard folder (it holds attribute.json, calibrated_sensor.json, "
                   "category.json and 10 more); choose another --out")
    assert folder_bytes(data.tables) == before and sorted(p.name for p in data.root.iterdir()) == [VERSION]


def test_refuses_a_folder_holding_other_files(synth, synth_shards, tmp_path, monkeypatch, capsys):
    shutil.copytree(version_dir(synth_shards, VERSION), version_dir(tmp_path, VERSION))
    marker_path(tmp_path, VERSION).unlink()
    (version_dir(tmp_path, VERSION) / "notes.txt").write_text("mine")
    code, _, err = shard_cli(synth, tmp_path, monkeypatch, capsys)
    one_line_error(code, err, f"{version_dir(tmp_path, VERSION)} is not a shard folder (it holds notes.txt)")
    assert (version_dir(tmp_path, VERSION) / "notes.txt").read_text() == "mine"


def test_refuses_an_out_overlapping_the_dataset(synth, tmp_path, monkeypatch, capsys):
    data = synth.copy_to(tmp_path / "data")
    before = folder_bytes(data.tables)
    code, _, err = shard_cli(data, data.tables / "shards", monkeypatch, capsys)
    one_line_error(code, err, f"{data.tables / 'shards' / VERSION} is inside the dataset's version folder "
                   f"{data.tables}; choose another --out")
    assert not (data.tables / "shards").exists()
    nested = tmp_path / "out" / VERSION / "tables"  # --root-path inside the would-be shard folder
    shutil.copytree(data.tables, nested / VERSION)
    code, _, err = run_cli(["shard", "--root-path", nested, "--version", VERSION, "--canbus", data.canbus,
                            "--out", tmp_path / "out"], monkeypatch, capsys)
    one_line_error(code, err, f"{tmp_path / 'out' / VERSION} holds the dataset's version folder")
    assert folder_bytes(nested / VERSION) == before
    link = tmp_path / "link"
    link.symlink_to(data.root)  # the same folder by another name
    code, _, err = shard_cli(data, link, monkeypatch, capsys)
    one_line_error(code, err, "is not a shard folder")
    assert folder_bytes(data.tables) == before


def test_canbus_of_loose_pose_files_fails_as_create_infos_does(synth, tmp_path, monkeypatch, capsys):
    loose = tmp_path / "loose"
    loose.mkdir()
    for path in sorted((synth.canbus / "can_bus").glob("*_pose.json"))[:2]:
        shutil.copyfile(path, loose / path.name)
    code, _, err = shard_cli(Data(synth.root, loose), tmp_path / "shards", monkeypatch, capsys)
    one_line_error(code, err, f"{tmp_path / 'can_bus'}: CAN bus folder not found")
    create_code, _, create_err = run_cli(["create-infos", "-q", "--root-path", synth.root, "--version", VERSION,
                                          "--canbus", loose, "--out-dir", tmp_path / "infos", "--no-file-check"],
                                         monkeypatch, capsys)
    assert (code, err) == (create_code, create_err)
    assert not (tmp_path / "shards").exists()


def test_progress_shows_whole_bytes(synth, tmp_path, monkeypatch, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = shard_cli(synth, tmp_path, monkeypatch, capsys)
    assert code == 0 and not caught, [str(w.message) for w in caught]
    routes = re.findall(r"route \w+: [^\r\n]*?B/s\]", err)
    counts = [count for bar in routes for count in re.search(r"\| (\S+)/(\S+) \[", bar).groups()]
    assert counts and all(re.fullmatch(r"\d+|[\d.]{1,4}[kMGT]?", count) for count in counts), routes
    total = tqdm.format_sizeof((synth.tables / "sample_data.json").stat().st_size, divisor=1024)
    assert any(bar.startswith("route sample_data") and f"/{total} [" in bar for bar in routes), routes


def test_progress_stops_at_the_total(tmp_path):
    bar = tqdm(total=10, file=io.StringIO())
    handle = write._Progress(io.BytesIO(b"x" * 25), bar)
    assert len(handle.read(8)) == 8 and len(handle.read()) == 17
    assert bar.n == 10
