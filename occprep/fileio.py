"""Edges of the pipeline: reading JSON and writing files atomically."""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from typing import IO, Callable, Iterator, List, Optional, Tuple, Type, TypeVar, Union

import msgspec
import numpy as np

from occprep.errors import OccprepError

T = TypeVar("T")


def read_json(path: Path, type: Type[T] = object) -> T:  # noqa: A002 - mirrors msgspec
    """Decode a JSON file into `type` (msgspec), naming the file and position on failure. The file is
    mapped, not copied into memory (about a third less time to read a 1.3 GB table); `msgspec.Raw`
    results keep the mapping until they are freed."""
    return decode_json(_content(Path(path)), type, str(path))


def read_raw_records(path: Path) -> Tuple[List[msgspec.Raw], Callable[[int], None]]:
    """The records of the JSON list in `path`, undecoded (`msgspec.Raw` views of the mapped file), and
    `release(i)`, to call once the records before the i-th are done with: the pages of the file before it
    leave this process's resident memory (they stay in the page cache, and would be read again from there
    if needed). A 1.3 GB table read a batch at a time then never holds more than a batch's pages."""
    data = _content(Path(path))
    raws = decode_json(data, List[msgspec.Raw], str(path))
    if not isinstance(data, mmap.mmap) or not hasattr(data, "madvise"):
        return raws, lambda i: None
    base = np.frombuffer(data, dtype=np.uint8).ctypes.data

    def release(i: int) -> None:
        if i < len(raws):
            offset = np.frombuffer(raws[i], dtype=np.uint8).ctypes.data - base
            data.madvise(mmap.MADV_DONTNEED, 0, offset - offset % mmap.PAGESIZE)

    return raws, release


def iter_list_chunks(path: Path, decoder: msgspec.json.Decoder, size: int) -> Iterator[Tuple[int, list]]:
    """(index of the first record, records) of the JSON list in `path`, decoded by `decoder` (of a list type
    whose items keep no view of their input: no `msgspec.Raw`) a run of about `size` bytes at a time.

    Each run ends at a record's closing brace followed by a comma, found by searching the mapped file; it
    is copied between brackets into one buffer, reused, and decoded there: one pass over each byte, where
    splitting the file into raw records first (`read_raw_records`) is a second. The mapped pages before a
    decoded run leave the resident memory. Raises msgspec's `DecodeError` for a run that is not valid JSON:
    a malformed file, or a brace and comma inside a string or a nested object, which end a run early
    (`read_raw_records` reads any JSON list exactly); `ValidationError` for records that do not fit the type."""
    data, buffer, done = _content(Path(path)), bytearray(), 0
    for start, end in _run_bounds(data, size):
        if len(buffer) < end - start + 2:
            buffer = bytearray(end - start + 2)
        with memoryview(buffer)[:end - start + 2] as view:
            view[0], view[1:-1], view[-1] = ord("["), memoryview(data)[start:end], ord("]")
            records = decoder.decode(view)
        if isinstance(data, mmap.mmap) and hasattr(data, "madvise"):
            data.madvise(mmap.MADV_DONTNEED, 0, end - end % mmap.PAGESIZE)
        if records:
            yield done, records
            done += len(records)


_WHITESPACE = b" \t\r\n"


def _run_bounds(data: Union[mmap.mmap, bytes], size: int) -> Iterator[Tuple[int, int]]:
    """(start, end) byte ranges of the records of the JSON list in `data`, about `size` bytes each: every
    range but the last ends at a `}` followed, after whitespace, by `,`; the last ends before the list's `]`."""
    start, last = data.find(b"[") + 1, data.rfind(b"]")
    if not 0 < start <= last or data[:start - 1].strip(_WHITESPACE) or data[last + 1:].strip(_WHITESPACE):
        raise msgspec.DecodeError("not a JSON list")
    while last - start > size:
        close = data.find(b"}", start + size, last)
        while close >= 0:
            after = close + 1
            while data[after] in _WHITESPACE:
                after += 1
            if data[after] == ord(","):
                break
            close = data.find(b"}", after, last)
        if close < 0:
            break
        yield start, close + 1
        start = after + 1
    yield start, last


def _content(path: Path) -> Union[mmap.mmap, bytes]:
    """The content of a file: mapped read-only, or read when it cannot be mapped (an empty file, a pipe).
    A missing or unreadable file is an `OccprepError` naming it."""
    try:
        with open(path, "rb") as handle:
            try:
                return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):
                return handle.read()
    except FileNotFoundError:
        raise OccprepError(f"{path}: file not found") from None
    except OSError as exc:
        raise OccprepError(f"{path}: cannot read ({exc.strerror})") from None


def decode_json(data: Union[bytes, mmap.mmap], type: Type[T], where: str) -> T:  # noqa: A002 - mirrors msgspec
    """Decode JSON `data` (the content of `where`, named in errors) into `type`."""
    try:
        return msgspec.json.decode(data, type=type)
    except msgspec.ValidationError as exc:
        raise OccprepError(f"{where}: unexpected content: {exc}") from None
    except msgspec.DecodeError as exc:
        raise OccprepError(f"{where}: malformed JSON: {exc}") from None


class Staging:
    """Files written under temporary names beside their targets and renamed into place together.

    Used as a context manager: the renames happen when the block ends without an exception;
    otherwise every temporary file is removed. A failed or interrupted run leaves neither a partial
    file nor a damaged older one, and never a mix of new and old outputs.
    """

    def __init__(self) -> None:
        self._pending: List[Tuple[str, Path]] = []
        self._made: List[Path] = []
        """Folders made for the outputs, outermost first: removed again if the run fails and they are empty."""

    @contextlib.contextmanager
    def write(self, path: Path, mode: str = "wb") -> Iterator[IO]:
        """Open a temporary file for `path`; once the block succeeds it waits for the commit."""
        with self.reserve(path) as tmp, write_reserved(tmp, mode) as handle:
            yield handle

    @contextlib.contextmanager
    def reserve(self, path: Path) -> Iterator[Path]:
        """Make an empty temporary file for `path`, for this or another process to write (`write_reserved`);
        once the block succeeds it waits for the commit, otherwise it is removed."""
        path = Path(path)
        if path.is_dir():
            raise OccprepError(f"{path}: is a folder; give the file name to write, or remove the folder")
        try:
            self._made.extend(reversed([folder for folder in (path.parent, *path.parent.parents)
                                        if not folder.exists()]))
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
        except OSError as exc:
            raise OccprepError(f"{path}: cannot write there ({exc.strerror}); a part of the path may be a file, "
                               "or not writable") from None
        try:
            yield Path(tmp)
            os.chmod(tmp, 0o644)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._pending.append((tmp, path))

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        pending, self._pending = self._pending, []
        if kind is None:
            for done, (tmp, path) in enumerate(pending):
                try:
                    os.replace(tmp, path)
                except OSError as exc:
                    _remove([tmp for tmp, _ in pending[done:]])
                    renamed = f" ({done} other output(s) were already renamed into place)" if done else ""
                    raise OccprepError(f"{path}: cannot replace it ({exc.strerror}){renamed}") from None
            return
        _remove([tmp for tmp, _ in pending])
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty


class Syncs:
    """Written files synced to disk in threads while this process goes on (building the next output, freeing
    the last one): `wait()` for them before the files are renamed into place, and before a fork."""

    def __init__(self) -> None:
        self._threads: List[threading.Thread] = []
        self._failures: List[OSError] = []

    def start(self, handle: IO, name: str) -> None:
        """Sync flushed `handle`'s file (through a descriptor of its own: `handle` may be closed at once);
        `name` is the file a failure names."""
        descriptor = os.dup(handle.fileno())
        thread = threading.Thread(target=self._sync, args=(descriptor, name), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _sync(self, descriptor: int, name: str) -> None:
        try:
            os.fsync(descriptor)
        except OSError as exc:
            self._failures.append(OSError(exc.errno, exc.strerror, name))
        finally:
            os.close(descriptor)

    def wait(self) -> None:
        """Wait for every sync started; raises the OSError (`filename`: the name given) of a failed one."""
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join()
        if self._failures:
            raise self._failures[0]


@contextlib.contextmanager
def write_reserved(temporary: Path, mode: str = "wb", syncs: Optional[Syncs] = None) -> Iterator[IO]:
    """Open a file that `Staging.reserve` made, for writing, and sync it at the end (with `syncs`: started in
    the background). It is opened, never made: a writer in another process that comes after the run failed
    and removed it makes no stray file."""
    with open(temporary, mode.replace("w", "r+")) as handle:
        yield handle
        handle.flush()
        if syncs is None:
            os.fsync(handle.fileno())
        else:
            syncs.start(handle, str(temporary))


def _remove(paths: List[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path`; rename it over `path` only if the block succeeds."""
    with Staging() as staging, staging.write(path, mode) as handle:
        yield handle


def write_json(path: Path, obj: object) -> None:
    """Write `obj` as indented JSON with sorted keys, atomically."""
    with atomic_write(path) as handle:
        handle.write(msgspec.json.format(msgspec.json.encode(obj, order="sorted"), indent=2))
        handle.write(b"\n")


def replace_folder(built: Path, target: Path) -> None:
    """Put the folder `built` at `target`: an existing `target` is renamed away first (and back if the rename
    of `built` fails) and deleted last, so `target` is never a mix of both. Raises OccprepError naming
    `target` when it cannot be replaced."""
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}" if target.exists() else None
    try:
        if old is not None:
            os.rename(target, old)
        os.rename(built, target)
    except OSError as exc:
        if old is not None and not target.exists():
            with contextlib.suppress(OSError):
                os.rename(old, target)
        raise OccprepError(f"{target}: cannot replace it ({exc.strerror})") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
