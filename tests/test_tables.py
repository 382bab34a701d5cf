"""Big tables decoded a run of bytes at a time (`iter_list_chunks`, `iter_record_batches`): the same records
as a whole read, however the runs fall, and the same errors."""

import json
from typing import List

import msgspec
import pytest

import occprep.tables
from occprep.errors import OccprepError
from occprep.fileio import iter_list_chunks
from occprep.tables import iter_record_batches, read_selected


class _Record(msgspec.Struct):
    a: int
    s: str


def _chunked(path, size):
    records = []
    for start, chunk in iter_list_chunks(path, msgspec.json.Decoder(List[_Record]), size):
        assert start == len(records)
        records.extend(msgspec.structs.asdict(record) for record in chunk)
    return records


@pytest.mark.parametrize("indent", [None, 2])
def test_runs_of_any_size_decode_every_record_once_in_order(tmp_path, indent):
    records = [{"a": i, "s": "x" * (i % 37)} for i in range(3000)]
    path = tmp_path / "table.json"
    path.write_text(json.dumps(records, indent=indent))
    for size in (1, 17, 400, 5000, 1 << 30):
        assert _chunked(path, size) == records, size


@pytest.mark.parametrize("text", ['{"rows": [{"a": 1, "s": ""}]}', "", '[{"a": 1, "s": ""}] trailing', "[1, 2"])
def test_what_is_not_one_json_list_raises_a_decode_error(tmp_path, text):
    path = tmp_path / "table.json"
    path.write_text(text)
    with pytest.raises(msgspec.DecodeError):
        _chunked(path, 4)


def test_an_empty_list_has_no_runs(tmp_path):
    path = tmp_path / "table.json"
    path.write_text(" [ ]\n")
    assert _chunked(path, 4) == []


@pytest.fixture
def batched(monkeypatch):
    """Every table is big, and decoded 64 bytes (or 7 raw records) at a time."""
    monkeypatch.setattr(occprep.tables, "SPLIT_DECODE_BYTES", 0)
    monkeypatch.setattr(occprep.tables, "DECODE_BYTES", 64)
    monkeypatch.setattr(occprep.tables, "DECODE_BATCH", 7)


def _records(version_dir, name):
    return [msgspec.structs.asdict(r) for batch in iter_record_batches(version_dir, name, _Record) for r in batch]


def test_braces_and_commas_inside_strings_still_read_every_record(tmp_path, batched):
    """A `},` inside a string ends a run early; the rest of the file is then read from its raw records."""
    records = [{"a": i, "s": "}, {" * (i % 3) + "]" * (i % 2)} for i in range(200)]
    (tmp_path / "sample_data.json").write_text(json.dumps(records))
    assert _records(tmp_path, "sample_data") == records


def test_a_record_that_does_not_fit_is_named_by_its_batch(tmp_path, batched):
    records = [{"a": i, "s": "x"} for i in range(100)]
    records[60]["a"] = "sixty"
    (tmp_path / "sample_data.json").write_text(json.dumps(records))
    with pytest.raises(OccprepError, match=r"sample_data\.json: unexpected content in the records from number "
                                           r"\d+: Expected `int`, got `str` - at `\$\[\d+\]\.a`"):
        _records(tmp_path, "sample_data")


def test_a_malformed_file_is_named_with_the_position(tmp_path, batched):
    (tmp_path / "sample_data.json").write_text('[{"a": 1, "s": "x"}, {"a": 2, "s": ')
    with pytest.raises(OccprepError, match=r"sample_data\.json: malformed JSON"):
        _records(tmp_path, "sample_data")


@pytest.mark.parametrize("tricky", [False, True])
def test_a_filtered_read_keeps_the_flagged_records_and_their_positions(tmp_path, batched, tricky):
    """`read_selected` on a big file: the records `keep` flags, with their positions in the file, whether
    the file is read in runs of bytes or (a string holding `},` ends a run early) from its raw records."""
    records = [{"a": i, "s": ("}, {" if tricky and i == 50 else "x")} for i in range(300)]
    (tmp_path / "sample_data.json").write_text(json.dumps(records))
    kept, positions = read_selected(tmp_path, "sample_data", _Record, lambda batch: [r.a % 7 == 3 for r in batch])
    assert [msgspec.structs.asdict(r) for r in kept] == [r for r in records if r["a"] % 7 == 3]
    assert positions.tolist() == [i for i in range(300) if i % 7 == 3]
