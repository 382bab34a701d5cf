"""`occprep shard`: a nuScenes version's tables and CAN bus files -> the shard folder `files` describes.

One streaming pass per routed table (ijson, constant memory) routes every record to its scene's
bucket through token maps built by the tables read before it (scene -> sample -> sample_annotation
-> instance; sample -> sample_data -> ego_pose). Routed records are appended to per-(table, bucket)
spill files, since they arrive in table order, not scene order; each bucket is then read back alone
and written as Parquet, one row group per scene. Memory is bounded by one bucket, the sample and
instance token maps, and `memory_tokens` ego pose tokens (more spill to an SQLite table on disk).

Everything is built in a temporary folder beside the target, `_complete.json` last, then renamed
into place: a version folder either has its marker and every file, or is rebuilt. Only a shard folder
(nothing but `SHARD_NAMES`) is ever replaced, never the dataset's own version folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import tempfile
import typing
from operator import attrgetter
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import msgspec
import numpy as np
from tqdm import tqdm

from occprep.canbus import read_can_bus, scene_number
from occprep.config import DatasetConfig, dataset_config
from occprep.create import resolve_canbus
from occprep.errors import OccprepError
from occprep.fileio import read_json, replace_folder
from occprep.layout import check_root_path, version_folder
from occprep.reporting import Reporter
from occprep.shards.files import (CAN_BUS_KINDS, FORMAT, GLOBAL_TABLES, ID_KEY, INDEX_COLUMNS, MARKER, ROUTED_TABLES,
                                  ROW, SHARD_NAMES, Manifest, global_table_path, index_path, marker_path, part_path,
                                  row_count_columns, version_dir)
from occprep.tables import TABLE_TYPES, Scene, read_table
from occprep.tokens import unresolved
from occprep.workers import gc_paused

try:  # the `shards` extra
    import ijson
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:
    ijson = pa = pq = None

EXTRA_MISSING = "occprep shard needs the shards extra: pip install 'occprep[shards]'"
BATCH = 8192
"""Records parsed, then validated by one `msgspec.convert` call, at a time."""
CHUNK = 8192
"""Records of one bucket buffered before they are appended to its spill file."""
BUFFERED = 262144
"""Records buffered over all buckets of a table before every buffer is appended to its spill file."""
READ_BYTES = 1 << 20
"""ijson's read size, bytes."""
LOOKUP = 500
"""Tokens per SQLite lookup query."""
UNROUTED_TABLES = ("instance", "ego_pose")
"""Tables whose records may name no scene (`Manifest.unrouted`)."""
SPILL = "_spill"
"""Sub-folder of the temporary folder holding the spill files (removed before the marker is written)."""
NAMES_SHOWN = 3
"""Names of a foreign folder's entries quoted in the error that refuses it."""


def shard_version(root: Path, version: str, canbus_root: Optional[Path], shards: Path, scenes_per_bucket: int = 64,
                  reporter: Optional[Reporter] = None, memory_tokens: int = 5_000_000,
                  force: bool = False) -> Tuple[Manifest, bool]:
    """Write `shards/<version>/` from `<root>/<version>/` (13 tables) and `<canbus_root>/can_bus/` (None: no CAN bus).

    Returns (the manifest, skipped): skipped, unless `force`, when a complete shard folder of the same run
    id (`Manifest.id`: inputs, `scenes_per_bucket`, CAN bus folder) is already there with every output at
    its recorded size. `memory_tokens`: ego pose tokens kept in a dict; beyond it they go to an SQLite table
    in the temporary folder. Errors (OccprepError, one line): missing folder or table, bad --canbus,
    `shards/<version>` not a shard folder or overlapping the dataset's version folder, malformed JSON or
    record, a token that resolves to no record; the previous shard folder is then left as it was, and
    `shards` is removed if this run created it and it is empty.
    """
    if pa is None or ijson is None:
        raise OccprepError(EXTRA_MISSING)
    if scenes_per_bucket < 1:
        raise OccprepError(f"--scenes-per-bucket {scenes_per_bucket}: give at least 1")
    reporter = reporter or Reporter("shard", quiet=True)
    tables_dir = _tables_dir(root, version)
    target = version_dir(shards, version)
    _check_target(target, tables_dir)
    canbus = _canbus_folder(canbus_root, root, reporter)
    canbus_name = None if canbus is None else os.path.abspath(canbus)
    scenes = read_table(tables_dir, "scene")
    canbus_files = _canbus_files(canbus, scenes, dataset_config("nuscenes"))
    inputs = _inputs(tables_dir, canbus_files)
    run_id = _run_id(version, scenes_per_bucket, canbus_name, inputs)
    done = _finished(shards, version)
    if not force and done is not None and done.id == run_id and _outputs_intact(target, done.outputs):
        return done, True
    created = not Path(shards).exists()
    building = _temporary_folder(Path(shards), version)
    try:
        with gc_paused():
            rows, unrouted = _build(_Layout(building, len(scenes), scenes_per_bucket, run_id), tables_dir, scenes,
                                    canbus_files, memory_tokens, reporter)
        manifest = Manifest(format=FORMAT, version=version, scenes=len(scenes),
                            buckets=_bucket_count(len(scenes), scenes_per_bucket), scenes_per_bucket=scenes_per_bucket,
                            rows=rows, unrouted=unrouted, inputs=inputs, canbus=canbus_name, id=run_id,
                            outputs=_outputs(building))
        _write_file(building / MARKER, msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n")
        replace_folder(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                Path(shards).rmdir()  # only when empty
        raise
    return manifest, False


def summarize(manifest: Manifest, skipped: bool, shards: Path, elapsed: float) -> Tuple[dict, List[str]]:
    """The summary of a `shard_version` run: JSON for `--report` (the manifest, its inputs and outputs
    counted) and the lines printed at the end."""
    target = version_dir(shards, manifest.version)
    report = {**msgspec.structs.asdict(manifest), "out": str(target), "skipped": skipped,
              "inputs": len(manifest.inputs), "outputs": len(manifest.outputs)}
    lines = [f"{manifest.version}: {manifest.scenes} scenes in {manifest.buckets} bucket(s) of "
             f"{manifest.scenes_per_bucket} -> {target}",
             "rows: " + ", ".join(f"{table} {count}" for table, count in manifest.rows.items()),
             "unrouted: " + ", ".join(f"{table} {count}" for table, count in manifest.unrouted.items()),
             f"wall time {elapsed:.1f} s" + (" (skipped: unchanged inputs; --force rebuilds)" if skipped else "")]
    if manifest.canbus is None:
        lines.insert(2, "no CAN bus folder given: the can_bus parts are empty")
    return report, lines


def _tables_dir(root: Path, version: str) -> Path:
    """`<root>/<version>`, after checking that it is a folder holding every table."""
    folder = version_folder(check_root_path(str(root)), version)
    missing = [name for name in TABLE_TYPES if not (folder / f"{name}.json").is_file()]
    if missing:
        raise OccprepError(f"{folder}: no {', '.join(f'{name}.json' for name in missing)}; a version folder holds "
                           "the 13 nuScenes tables")
    return folder


def _check_target(target: Path, tables_dir: Path) -> None:
    """Refuse a `--out` whose `<version>` folder `target` is not ours to replace: a file, a folder holding
    anything but `SHARD_NAMES`, or one that is, holds or lies inside the dataset's version folder."""
    if target.exists() and not target.is_dir():
        raise OccprepError(f"{target}: is a file; remove it or choose another --out")
    foreign = sorted(set(os.listdir(target)) - SHARD_NAMES) if target.is_dir() else []
    if foreign:
        more = f" and {len(foreign) - NAMES_SHOWN} more" if len(foreign) > NAMES_SHOWN else ""
        raise OccprepError(f"{target} is not a shard folder (it holds {', '.join(foreign[:NAMES_SHOWN])}{more}); "
                           "choose another --out")
    built, dataset = target.resolve(), tables_dir.resolve()
    relation = ("is" if built == dataset else "holds" if built in dataset.parents
                else "is inside" if dataset in built.parents else None)
    if relation is not None:
        raise OccprepError(f"{target} {relation} the dataset's version folder {tables_dir}; choose another --out")


def _canbus_folder(canbus_root: Optional[Path], root: Path, reporter: Reporter) -> Optional[Path]:
    """The folder holding can_bus/ (`resolve_canbus`, telling its correction notes), or None without
    `canbus_root`. A corrected folder without can_bus/ fails with create-infos' error (`read_can_bus`)."""
    if canbus_root is None:
        return None
    canbus, notes = resolve_canbus(canbus_root, str(root))
    read_can_bus(canbus, (), dataset_config("nuscenes"), Reporter("shard", quiet=True))  # no scenes: the check only
    for note in notes:
        reporter.info(note)
    return canbus


def _canbus_files(canbus: Optional[Path], scenes: Sequence[Scene], config: DatasetConfig) -> List[List[Tuple[str, Path]]]:
    """Per scene (scene-table order): the (kind, path) of its CAN bus files that exist, for the kinds in
    `CAN_BUS_KINDS`; none for a blacklisted scene or without a CAN bus folder."""
    if canbus is None:
        return [[] for _ in scenes]
    folder = Path(canbus) / "can_bus"
    present = set(os.listdir(folder))
    blacklist = set(config.can_bus_blacklist)
    return [[] if scene_number(scene.name) in blacklist else
            [(kind, folder / f"{scene.name}_{kind}.json") for kind in CAN_BUS_KINDS
             if f"{scene.name}_{kind}.json" in present] for scene in scenes]


def _inputs(tables_dir: Path, canbus_files: List[List[Tuple[str, Path]]]) -> Dict[str, Tuple[int, int]]:
    """Absolute path -> (size in bytes, mtime in ns) of the 13 tables and the CAN bus files that are read."""
    paths = [tables_dir / f"{name}.json" for name in TABLE_TYPES]
    paths += [path for files in canbus_files for _, path in files]
    inputs = {}
    for path in paths:
        try:
            stat = path.stat()
        except OSError as exc:
            raise OccprepError(f"{path}: cannot read ({exc.strerror})") from None
        inputs[os.path.abspath(path)] = (stat.st_size, stat.st_mtime_ns)
    return inputs


def _run_id(version: str, scenes_per_bucket: int, canbus: Optional[str], inputs: Dict[str, Tuple[int, int]]) -> str:
    """`Manifest.id`: sha256 (hex) of the JSON of (FORMAT, version, scenes_per_bucket, canbus, inputs sorted
    by path)."""
    key = [FORMAT, version, scenes_per_bucket, canbus, sorted([path, *stat] for path, stat in inputs.items())]
    return hashlib.sha256(msgspec.json.encode(key)).hexdigest()


def _outputs(folder: Path) -> Dict[str, int]:
    """`Manifest.outputs`: every file in `folder` (path relative to it, / separated) -> its size in bytes."""
    return {path.relative_to(folder).as_posix(): path.stat().st_size for path in sorted(folder.rglob("*"))
            if path.is_file()}


def _outputs_intact(folder: Path, outputs: Dict[str, int]) -> bool:
    """Whether every file of `outputs` is in `folder` at its recorded size."""
    try:
        return all((folder / name).stat().st_size == size for name, size in outputs.items())
    except OSError:
        return False


def _finished(shards: Path, version: str) -> Optional[Manifest]:
    """The manifest of a complete shard folder of `version`, or None (no folder, no marker, unreadable marker)."""
    try:
        return read_json(marker_path(shards, version), Manifest)
    except OccprepError:
        return None


def _temporary_folder(shards: Path, version: str) -> Path:
    """A new empty folder `shards/.<version>.tmp-<random>` to build the shard folder in."""
    try:
        shards.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=shards))
        building.chmod(0o755)
    except OSError as exc:
        raise OccprepError(f"--out {shards}: cannot create a folder there ({exc.strerror})") from None
    return building


def _build(layout: "_Layout", tables_dir: Path, scenes: List[Scene], canbus_files: List[List[Tuple[str, Path]]],
           memory_tokens: int, reporter: Reporter) -> Tuple[Dict[str, int], Dict[str, int]]:
    """Write every file but the marker into the shard folder `layout.out`; returns (table or 'can_bus' -> rows
    written, table -> records routed to no scene)."""
    with reporter.stage("tables"):
        for name in GLOBAL_TABLES:
            read_table(tables_dir, name)
            destination = global_table_path(layout.out.parent, layout.out.name, name)
            destination.parent.mkdir(exist_ok=True)
            shutil.copyfile(tables_dir / f"{name}.json", destination)
            _fsync(destination)
    spill_dir = layout.out / SPILL
    spill_dir.mkdir()
    spills = {table: _Spill(spill_dir, table, layout.per_bucket) for table in ROUTED_TABLES}
    unrouted = _route_tables(tables_dir, scenes, spills, spill_dir, memory_tokens, reporter)
    counts = {}
    for table in ROUTED_TABLES:
        with reporter.stage(f"write {table}"):
            counts[table] = _write_table(layout, table, spills[table], reporter)
    shutil.rmtree(spill_dir)
    with reporter.stage("write can_bus"):
        counts["can_bus"] = _write_can_bus(layout, scenes, canbus_files, reporter)
    _write_index(layout, scenes, counts)
    return {table: int(count.sum()) for table, count in counts.items()}, unrouted


def _route_tables(tables_dir: Path, scenes: List[Scene], spills: Dict[str, "_Spill"], spill_dir: Path,
                  memory_tokens: int, reporter: Reporter) -> Dict[str, int]:
    """Stream the routed tables in dependency order into `spills`; returns table -> records routed to no
    scene (`UNROUTED_TABLES`)."""
    scene_of_scene = {scene.token: row for row, scene in enumerate(scenes)}
    scene_of_sample: Dict[str, int] = {}
    scene_of_instance: Dict[str, int] = {}
    poses = _TokenMap(spill_dir / "ego_pose_tokens.sqlite", memory_tokens)

    def remember(index: Dict[str, int], field: str) -> Callable[[list, List[int]], None]:
        def keep_first(records: list, rows: List[int]) -> None:
            for token, row in zip(map(attrgetter(field), records), rows):
                index.setdefault(token, row)
        return keep_first

    def poses_of(records: list, rows: List[int]) -> None:
        poses.add(list(map(attrgetter("ego_pose_token"), records)), rows)

    routes = {  # table -> (field naming the scene's record, its token -> scene row, must resolve, what it tells)
        "sample": ("scene_token", _lookup(scene_of_scene), True, remember(scene_of_sample, "token")),
        "sample_annotation": ("sample_token", _lookup(scene_of_sample), True,
                              remember(scene_of_instance, "instance_token")),
        "instance": ("token", _lookup(scene_of_instance), False, None),
        "sample_data": ("sample_token", _lookup(scene_of_sample), True, poses_of),
        "ego_pose": ("token", poses.get, False, None),
    }
    unrouted = {}
    try:
        for table, (field, scene_of, required, tell) in routes.items():
            with reporter.stage(f"route {table}"):
                left = _route(tables_dir / f"{table}.json", table, spills[table], field, scene_of, required, tell,
                              reporter)
            if table in UNROUTED_TABLES:
                unrouted[table] = left
    finally:
        poses.close()
    return unrouted


def _lookup(index: Dict[str, int]) -> Callable[[List[str]], List[int]]:
    """Tokens -> their rows in `index`, -1 for a token it lacks."""
    return lambda tokens: [index.get(token, -1) for token in tokens]


def _route(path: Path, table: str, spill: "_Spill", field: str, scene_of: Callable[[List[str]], List[int]],
           required: bool, tell: Optional[Callable[[list, List[int]], None]], reporter: Reporter) -> int:
    """Stream table `table` from `path` into `spill`, each record to the scene `scene_of` gives its `field`;
    `tell(records, scene rows)` after each batch. A record that reaches no scene is an error when
    `required`, else left out; returns how many were left out."""
    left_out = 0
    tokens_of = attrgetter(field)
    for start, records in _stream(path, table, reporter):
        tokens = list(map(tokens_of, records))
        rows = scene_of(tokens)
        if -1 in rows:
            if required:
                bad = rows.index(-1)
                raise unresolved(table, field, tokens[bad], records[bad].token)
            left_out += rows.count(-1)
        spill.add(start, records, rows)
        if tell is not None:
            tell(records, rows)
    spill.close()
    return left_out


class _Progress:
    """A binary file whose reads advance a progress bar in bytes (never past its total: the file may grow)."""

    def __init__(self, handle: BinaryIO, bar) -> None:
        self._handle, self._bar = handle, bar

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._bar.update(min(len(data), self._bar.total - self._bar.n))
        return data


def _byte_bar(reporter: Reporter, total: int, desc: str) -> tqdm:
    """A progress bar over `total` bytes, shown in binary units (KiB, MiB, ...)."""
    bar = reporter.progress(total=total, desc=desc, unit="B")
    bar.refresh()
    return bar


def _stream(path: Path, table: str, reporter: Reporter) -> Iterator[Tuple[int, list]]:
    """(position of the first record, records as `TABLE_TYPES[table]`) of the JSON list in `path`, `BATCH`
    records at a time, parsed incrementally. Errors name the file and, for a bad record, its position."""
    type_ = TABLE_TYPES[table]
    with open(path, "rb") as handle, _byte_bar(reporter, os.fstat(handle.fileno()).st_size, f"route {table}") as bar:
        _expect_list(handle, path)
        start, objects = 0, []
        try:
            for obj in _items(_Progress(handle, bar)):
                objects.append(obj)
                if len(objects) == BATCH:
                    yield start, _convert(objects, type_, path, start)
                    start, objects = start + BATCH, []
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            raise OccprepError(f"{path}: malformed JSON after {start + len(objects)} records: "
                               f"{_json_problem(exc)}") from None
        if objects:
            yield start, _convert(objects, type_, path, start)


def _items(handle: _Progress) -> Iterator[dict]:
    """The elements of the top-level JSON list read from `handle` (ijson's C backend when it is there)."""
    try:
        backend = ijson.get_backend("yajl2_c")
    except ImportError:
        backend = ijson
    return backend.items(handle, "item", use_float=True, buf_size=READ_BYTES)


def _expect_list(handle: BinaryIO, path: Path) -> None:
    """Check that the file starts with a JSON list (a table); leaves `handle` at its start."""
    head = handle.read(4096).lstrip()
    handle.seek(0)
    if not head.startswith(b"["):
        found = "an empty file" if not head else f"{head[:20].decode('utf-8', 'replace')!r}"
        raise OccprepError(f"{path}: malformed JSON: a table is a list of records ([...]), found {found}")


def _json_problem(exc: Exception) -> str:
    """ijson's (multi-line) message as one line: the problem, then the text around it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    problem = lines[0] + (f" near {lines[1][:80]!r}" if len(lines) > 1 and "(right here)" not in lines[1] else "")
    if any(word in problem for word in ("NaN", "Infinity")):
        problem += " (NaN and Infinity are not JSON: write null or a number)"
    return problem


def _convert(objects: List[dict], type_: type, path: Path, start: int) -> list:
    """`objects` validated as `type_` records; an error names the file and the first bad record's position."""
    try:
        return msgspec.convert(objects, List[type_])
    except msgspec.ValidationError:
        for offset, obj in enumerate(objects):
            try:
                msgspec.convert(obj, type_)
            except msgspec.ValidationError as exc:
                raise OccprepError(f"{path}: record {start + offset} (0-based): {exc}") from None
        raise


class _TokenMap:
    """Token -> scene row: the first `memory` tokens in a dict, the rest in an SQLite table at `path`
    (created on the first spill). A token added twice keeps its first row."""

    def __init__(self, path: Path, memory: int) -> None:
        self._path, self._memory = path, memory
        self._tokens: Dict[str, int] = {}
        self._db: Optional[sqlite3.Connection] = None

    def add(self, tokens: List[str], rows: List[int]) -> None:
        room = max(self._memory - len(self._tokens), 0)
        for token, row in zip(tokens[:room], rows[:room]):
            self._tokens.setdefault(token, row)
        spilled = [(token, row) for token, row in zip(tokens[room:], rows[room:]) if token not in self._tokens]
        if spilled:
            db = self._open()
            with db:
                db.executemany("INSERT OR IGNORE INTO tokens VALUES (?, ?)", spilled)

    def get(self, tokens: List[str]) -> List[int]:
        """The row of each token, -1 for an unknown one."""
        rows = [self._tokens.get(token, -1) for token in tokens]
        if self._db is None:
            return rows
        missing = [position for position, row in enumerate(rows) if row < 0]
        found: Dict[str, int] = {}
        for start in range(0, len(missing), LOOKUP):
            chosen = [tokens[position] for position in missing[start:start + LOOKUP]]
            query = f"SELECT token, row FROM tokens WHERE token IN ({','.join('?' * len(chosen))})"
            found.update(self._db.execute(query, chosen))
        for position in missing:
            rows[position] = found.get(tokens[position], -1)
        return rows

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(self._path)
            self._db.execute("PRAGMA journal_mode = OFF")
            self._db.execute("PRAGMA synchronous = OFF")
            self._db.execute("CREATE TABLE tokens (token TEXT PRIMARY KEY, row INTEGER NOT NULL) WITHOUT ROWID")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class _Spill:
    """The routed records of one table, appended in file order to one spill file per bucket: chunks of
    an 8-byte little-endian length and the msgpack of (positions in the table, scene rows, records)."""

    def __init__(self, folder: Path, table: str, scenes_per_bucket: int) -> None:
        self._folder, self._table, self._per_bucket = folder, table, scenes_per_bucket
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(Tuple[List[int], List[int], List[TABLE_TYPES[table]]])
        self._buffers: Dict[int, Tuple[List[int], List[int], list]] = {}
        self._buffered = 0

    def add(self, start: int, records: list, rows: List[int]) -> None:
        """Buffer `records` (positions `start`, `start + 1`, ...) for the buckets of their scene `rows`
        (-1: none, left out); full buffers go to their spill files."""
        buckets = np.asarray(rows, dtype=np.int64) // self._per_bucket  # -1 stays -1
        edges = [0, *(np.flatnonzero(np.diff(buckets)) + 1).tolist(), len(rows)]
        kept = 0
        for first, end in zip(edges, edges[1:]):  # runs of records of one bucket
            bucket = int(buckets[first])
            if bucket < 0:
                continue
            buffer = self._buffers.setdefault(bucket, ([], [], []))
            buffer[0].extend(range(start + first, start + end))
            buffer[1].extend(rows[first:end])
            buffer[2].extend(records[first:end])
            kept += end - first
        self._buffered += kept
        if self._buffered >= BUFFERED:
            self.close()
        else:
            for bucket in [bucket for bucket, buffer in self._buffers.items() if len(buffer[0]) >= CHUNK]:
                self._flush(bucket)

    def close(self) -> None:
        """Append every buffer to its spill file."""
        for bucket in sorted(self._buffers):
            self._flush(bucket)
        self._buffered = 0

    def _path(self, bucket: int) -> Path:
        return self._folder / f"{self._table}-{bucket:05d}.msgpack"

    def _flush(self, bucket: int) -> None:
        buffer = self._buffers.pop(bucket)
        self._buffered -= len(buffer[0])
        payload = self._encoder.encode(buffer)
        with open(self._path(bucket), "ab") as handle:
            handle.write(len(payload).to_bytes(8, "little"))
            handle.write(payload)

    def read(self, bucket: int) -> Tuple[List[int], List[int], list]:
        """(positions, scene rows, records) of `bucket` in file order; removes its spill file."""
        path = self._path(bucket)
        if not path.exists():
            return [], [], []
        data = memoryview(path.read_bytes())
        positions, rows, records = [], [], []
        offset = 0
        while offset < len(data):
            size = int.from_bytes(data[offset:offset + 8], "little")
            chunk = self._decoder.decode(data[offset + 8:offset + 8 + size])
            positions += chunk[0]
            rows += chunk[1]
            records += chunk[2]
            offset += 8 + size
        path.unlink()
        return positions, rows, records


def _bucket_count(scenes: int, scenes_per_bucket: int) -> int:
    return -(-scenes // scenes_per_bucket)


class _Layout:
    """Where the parts of the shard folder `out` go (`files.part_path`, its name standing for the version),
    which scenes each bucket holds, and the run id every Parquet file carries."""

    def __init__(self, out: Path, scenes: int, scenes_per_bucket: int, run_id: str) -> None:
        self.out, self.scenes, self.per_bucket, self.run_id = out, scenes, scenes_per_bucket, run_id
        self.buckets = _bucket_count(scenes, scenes_per_bucket)

    @property
    def metadata(self) -> Dict[bytes, bytes]:
        """The schema metadata of every Parquet file: the run id under `files.ID_KEY`."""
        return {ID_KEY: self.run_id.encode()}

    def scene_range(self, bucket: int) -> range:
        return range(bucket * self.per_bucket, min((bucket + 1) * self.per_bucket, self.scenes))

    def part(self, table: str, bucket: int) -> Path:
        path = part_path(self.out.parent, self.out.name, table, bucket)
        path.parent.mkdir(exist_ok=True)
        return path


def _arrow_type(hint: object) -> "pa.DataType":
    """The Parquet column type of a record field's type (see `files`)."""
    scalar = {str: pa.string(), int: pa.int64(), bool: pa.bool_(), float: pa.float64()}
    if typing.get_origin(hint) is list:
        return pa.list_(_arrow_type(typing.get_args(hint)[0]))
    return scalar[hint]


def _table_schema(table: str) -> "pa.Schema":
    """The Parquet schema of a routed table's parts: the record's fields in order, then `_row`."""
    fields = msgspec.structs.fields(TABLE_TYPES[table])
    return pa.schema([(field.name, _arrow_type(field.type)) for field in fields] + [(ROW, pa.int64())])


def _can_bus_schema() -> "pa.Schema":
    """The Parquet schema of the can_bus parts."""
    return pa.schema([("scene_name", pa.string()), ("kind", pa.string()), ("content", pa.binary())])


def _write_table(layout: _Layout, table: str, spill: _Spill, reporter: Reporter) -> np.ndarray:
    """Write `<table>/part-<bucket>.parquet` of every bucket from `spill`; returns the (scenes,) int64 rows
    per scene."""
    schema = _table_schema(table).with_metadata(layout.metadata)
    counts = np.zeros(layout.scenes, dtype=np.int64)
    for bucket in reporter.progress(range(layout.buckets), desc=f"write {table}", unit="bucket"):
        positions, rows, records = spill.read(bucket)
        scenes = layout.scene_range(bucket)
        scene_rows = np.asarray(rows, dtype=np.int64)
        if len(scene_rows) and np.any(np.diff(scene_rows) < 0):
            order = np.argsort(scene_rows, kind="stable")
            records = [records[i] for i in order.tolist()]
            positions = [positions[i] for i in order.tolist()]
            scene_rows = scene_rows[order]
        per_scene = np.bincount(scene_rows - scenes.start, minlength=len(scenes))
        _write_groups(layout.part(table, bucket), _arrow_table(table, schema, records, positions), per_scene)
        counts[scenes.start:scenes.stop] = per_scene
    return counts


def _arrow_table(table: str, schema: "pa.Schema", records: list, positions: List[int]) -> "pa.Table":
    """Columns of `records` (and their positions as `_row`) in `schema`."""
    try:
        columns = [pa.array(list(map(attrgetter(field.name), records)), type=field.type) for field in schema
                   if field.name != ROW]
    except (pa.ArrowInvalid, OverflowError) as exc:
        raise OccprepError(f"{table}: a value does not fit its Parquet column ({exc})") from None
    return pa.Table.from_arrays(columns + [pa.array(positions, type=pa.int64())], schema=schema)


def _write_groups(path: Path, table: "pa.Table", per_scene: np.ndarray) -> None:
    """Write `table` to `path`, row group i holding the next `per_scene[i]` rows (empty groups included)."""
    with pq.ParquetWriter(path, table.schema, compression="zstd") as writer:
        offset = 0
        for count in per_scene.tolist():
            writer.write_table(table.slice(offset, count), row_group_size=max(count, 1))
            offset += count
    _fsync(path)


def _write_can_bus(layout: _Layout, scenes: List[Scene], canbus_files: List[List[Tuple[str, Path]]],
                   reporter: Reporter) -> np.ndarray:
    """Write `can_bus/part-<bucket>.parquet`: per scene, one row (scene_name, kind, content) per file in
    `canbus_files`; returns the (scenes,) int64 rows per scene."""
    schema = _can_bus_schema().with_metadata(layout.metadata)
    counts = np.array([len(files) for files in canbus_files], dtype=np.int64)
    for bucket in reporter.progress(range(layout.buckets), desc="write can_bus", unit="bucket"):
        path = layout.part("can_bus", bucket)
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            for row in layout.scene_range(bucket):
                files = canbus_files[row]
                contents = [_read_bytes(file) for _, file in files]
                writer.write_table(pa.Table.from_arrays(
                    [pa.array([scenes[row].name] * len(files), pa.string()),
                     pa.array([kind for kind, _ in files], pa.string()), pa.array(contents, pa.binary())],
                    schema=schema), row_group_size=max(len(files), 1))
        _fsync(path)
    return counts


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OccprepError(f"{path}: cannot read ({exc.strerror})") from None


def _write_index(layout: _Layout, scenes: List[Scene], counts: Dict[str, np.ndarray]) -> None:
    """index.parquet: `INDEX_COLUMNS` and the row counts of every scene, in scene-table order."""
    rows = np.arange(len(scenes), dtype=np.int64)
    columns = [pa.array(rows), pa.array([scene.token for scene in scenes], pa.string()),
               pa.array([scene.name for scene in scenes], pa.string()),
               pa.array((rows // layout.per_bucket).astype(np.int32)),
               pa.array((rows % layout.per_bucket).astype(np.int32))]
    columns += [pa.array(counts[name[len("rows_"):]]) for name in row_count_columns()]
    table = pa.Table.from_arrays(columns, names=[*INDEX_COLUMNS, *row_count_columns()])
    path = index_path(layout.out.parent, layout.out.name)
    pq.write_table(table.replace_schema_metadata(layout.metadata), path, compression="zstd")
    _fsync(path)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    """Flush a written file to disk, so that the marker written after it never outlives it in a crash."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
