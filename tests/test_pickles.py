import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

from occprep.errors import OccprepError
from occprep.pickles import dump_pickle, dumps, load_pickle


def pickle_globals(data: bytes) -> set:
    """(module, name) of every global a pickle imports (protocol 2-4), following the memo."""
    found, pushed, memo, last = set(), [], [], None
    for op, arg, _ in pickletools.genops(data):
        if op.name == "MEMOIZE":
            memo.append(last)
            continue
        last = arg if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE") else None
        if last is not None:
            pushed.append(arg)
        elif op.name in ("BINGET", "LONG_BINGET") and memo[arg] is not None:
            pushed.append(memo[arg])
        elif op.name == "STACK_GLOBAL":
            found.add(tuple(pushed[-2:]))
        elif op.name == "GLOBAL":
            found.add(tuple(arg.split(" ", 1)))
    return found


SAMPLE = {
    "boxes": np.arange(14, dtype=np.float64).reshape(2, 7),
    "names": np.array(["car", "pedestrian"]),
    "valid": np.array([True, False]),
    "pts": np.array([3, 0], dtype=np.int64),
    "empty": np.zeros((0, 7)),
    "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "plain": [1, 2.5, "x", True, None, {"nested": ""}],
}


def test_written_pickle_names_only_numpy_ndarray_and_dtype():
    data = dumps(SAMPLE)
    assert data[1] <= 4  # PROTO opcode argument
    assert pickle_globals(data) == {("numpy", "ndarray"), ("numpy", "dtype")}


def test_round_trip_keeps_values_dtypes_and_writability(tmp_path):
    path = tmp_path / "x.pkl"
    dump_pickle(SAMPLE, path)
    loaded = load_pickle(path)
    for key in ("boxes", "names", "valid", "pts", "empty", "fortran"):
        np.testing.assert_array_equal(loaded[key], SAMPLE[key])
        assert loaded[key].dtype == SAMPLE[key].dtype
        assert loaded[key].shape == SAMPLE[key].shape
    assert loaded["boxes"].flags.writeable
    assert loaded["plain"] == SAMPLE["plain"]


def test_numpy_scalars_are_portable_and_object_arrays_refused(tmp_path):
    values = {"b": np.True_, "i": np.int64(-3), "f": np.float64(1.5)}
    data = dumps(values)
    assert pickle_globals(data) == {("numpy", "bool_"), ("numpy", "int64"), ("numpy", "float64")}
    (tmp_path / "s.pkl").write_bytes(data)
    loaded = load_pickle(tmp_path / "s.pkl")
    assert loaded == values and all(type(loaded[k]) is type(v) for k, v in values.items())
    with pytest.raises(TypeError):
        dumps({"x": np.float32(1.0)})
    with pytest.raises(TypeError):
        dumps({"x": np.array([{}], dtype=object)})


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo should-not-run",))


def test_pickle_that_imports_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"infos": [_RunsCode()]}, protocol=2))
    with pytest.raises(OccprepError, match=r"evil.pkl: refused to load: the pickle imports (posix|nt)\.system"):
        load_pickle(path)


def test_default_numpy_pickles_still_load(tmp_path):
    path = tmp_path / "ref.pkl"
    path.write_bytes(pickle.dumps({"infos": [{"can_bus": np.zeros(18), "t": np.int64(5)}]}, protocol=2))
    loaded = load_pickle(path)
    assert loaded["infos"][0]["can_bus"].shape == (18,)
    assert loaded["infos"][0]["t"] == 5


def test_truncated_pickle_is_a_one_line_error(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(dumps(SAMPLE)[:40])
    with pytest.raises(OccprepError, match="cut.pkl: not a readable pickle"):
        load_pickle(path)


def test_array_state_is_numpys_own():
    """The state the writer builds is `ndarray.__reduce__()`'s, for every layout and dtype infos hold."""
    import numpy as np

    from occprep.pickles import array_state

    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    arrays = [base, base.T, base[:, ::2], base[1], np.full((), 3.0), np.zeros((0, 7)), np.zeros(0),
              base.astype(np.float32).T, base > 3, np.array(["car", "pedestrian"]), np.arange(5, dtype=np.int64)[::-1],
              np.asfortranarray(base), np.ones((3, 1)), np.ones((1, 3)).T]
    for array in arrays:
        assert array_state(array) == array.__reduce__()[2], (array.shape, array.dtype, array.flags)


def test_staging_removes_the_folders_it_made_when_the_run_fails(tmp_path):
    from occprep.fileio import Staging

    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        with Staging() as staging:
            for path in (tmp_path / "new" / "deeper" / "a.pkl", tmp_path / "kept" / "b.pkl"):
                with staging.write(path) as handle:
                    handle.write(b"x")
            raise RuntimeError("the run fails after writing")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["kept"]
    with Staging() as staging, staging.write(tmp_path / "new" / "a.pkl") as handle:
        handle.write(b"x")
    assert (tmp_path / "new" / "a.pkl").read_bytes() == b"x"


def test_a_reserved_file_is_renamed_into_place_or_removed_and_never_made_anew(tmp_path):
    """`Staging.reserve` makes the temporary file another process writes (`write_reserved`): renamed into
    place when the run succeeds, removed when it fails; a writer that comes only after the removal fails
    instead of leaving a stray file."""
    from occprep.fileio import Staging, write_reserved

    with Staging() as staging, staging.reserve(tmp_path / "out" / "a.pkl") as temporary:
        with write_reserved(temporary) as handle:
            handle.write(b"written elsewhere")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.pkl"]
    assert (tmp_path / "out" / "a.pkl").read_bytes() == b"written elsewhere"

    with pytest.raises(RuntimeError), Staging() as staging, staging.reserve(tmp_path / "out" / "b.pkl") as temporary:
        raise RuntimeError("the run fails before the other process opens its file")
    with pytest.raises(FileNotFoundError), write_reserved(temporary):
        pass
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.pkl"]


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident memory from /proc")
def test_released_records_leave_the_resident_memory_and_still_read_the_same(tmp_path):
    """`read_raw_records`' `release(i)`: the mapped pages before record i leave this process's resident
    memory, and every record still reads as in the file (from the page cache) afterwards."""
    import json
    import os

    from occprep.fileio import read_raw_records

    records = [{"token": f"{i:032x}", "filename": "samples/x" * 40} for i in range(200_000)]
    path = tmp_path / "sample_data.json"
    path.write_text(json.dumps(records))
    page = os.sysconf("SC_PAGE_SIZE")

    def resident_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * page / (1 << 20)

    raws, release = read_raw_records(path)  # decoding the list touches every page of the file
    before = resident_mb()
    release(len(raws) - 1)
    assert before - resident_mb() > 0.8 * path.stat().st_size / (1 << 20)
    assert [json.loads(bytes(raw)) for raw in raws] == records
