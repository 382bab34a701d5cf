"""Token keys: `TokenIndex` resolves exactly as a dict of the table's tokens would, for every form of token."""

import random
import re

import pytest

from occprep.errors import OccprepError
from occprep.tokens import TokenIndex, hex_keys


def _as_a_dict(table, tokens):
    rows = {token: row for row, token in enumerate(table)}
    rows[""] = -1
    return [rows.get(token, -2) for token in tokens]


def test_rows_are_a_dicts_for_hex_and_other_tokens_repeats_and_blanks():
    chance = random.Random(5)

    def token():
        return "".join(chance.choice("0123456789abcdef") for _ in range(32))

    odd = ["", "scene-0001", "ABCDEF" + "0" * 26, "ab cd" + "0" * 27, "0" * 31 + "\n", "é" * 32, "0" * 32 + " ",
           "0" * 30, "0" * 34, " " + "0" * 31]
    for _ in range(1500):
        table = [token() for _ in range(chance.randint(0, 25))]
        if table and chance.random() < 0.2:
            table.append(chance.choice(table))  # a repeated token: its last row, as a dict keeps it
        if chance.random() < 0.2:
            table.append(chance.choice(odd))
        asked = [chance.choice(table + odd + [token()]) for _ in range(chance.randint(0, 20))]
        expected = _as_a_dict(table, asked)
        owners = [f"owner{i}" for i in range(len(asked))]
        if -2 in expected:
            bad = expected.index(-2)
            message = f"sample.next {asked[bad]!r} of record 'owner{bad}' does not resolve"
            with pytest.raises(OccprepError, match=re.escape(message)):
                TokenIndex(table).rows(asked, owners, "sample", "next")
        else:
            assert TokenIndex(table).rows(asked, owners, "sample", "next").tolist() == expected


def test_tokens_sharing_their_first_eight_bytes_still_resolve():
    table = ["0123456789abcdef" + "0" * 16, "0123456789abcdef" + "f" * 16]
    assert TokenIndex(table).rows(table[::-1] + [""], ["a", "b", "c"], "t", "f").tolist() == [1, 0, -1]


def test_hex_keys_are_the_tokens_bytes_or_none():
    assert hex_keys(["00" * 15 + "ff"]).tolist() == [bytes(15) + b"\xff"]
    assert hex_keys(["00" * 15 + "FF"]) is None and hex_keys(["00" * 15]) is None and hex_keys([""]) is None
    assert len(hex_keys([])) == 0
    # as long as 32-character tokens joined by spaces, with a space after every 32 characters, yet not 32 each
    assert hex_keys(["0" * 32 + " ", "0" * 30]) is None and hex_keys(["0" * 34, "0" * 30]) is None
