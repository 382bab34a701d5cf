"""Record tokens as fixed-width keys: sets of tokens (`check`) and token -> row look-ups (`scan`).

nuScenes tokens are 32 lowercase hex digits; packed, each is a 16-byte key (dtype S16, the token's
bytes), so that sets and joins over millions of them are vectorised sorts and searches instead of
Python dicts. Tokens of any other form (a hand-made table, a converter's) work too, through the
slower dict path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, FrozenSet, Optional, Sequence, Tuple

import numpy as np

from occprep.errors import OccprepError

_HEX_TOKEN = re.compile(r"[0-9a-f]{32}")


def unresolved(table: str, field: str, token: str, owner: str) -> OccprepError:
    """The error for `table.field` = `token` of record `owner` that names no record."""
    return OccprepError(f"{table}.{field} {token!r} of record {owner!r} does not resolve to any record; "
                        "the tables are inconsistent (re-extract or regenerate them)")


def hex_keys(tokens: Sequence[str]) -> Optional[np.ndarray]:
    """(N,) S16 keys of `tokens` in order, or None unless every one is 32 lowercase hex digits."""
    joined = " ".join(tokens)
    return _keys(joined, len(tokens)) if _all_32(joined, len(tokens)) else None


def _all_32(joined: str, count: int) -> bool:
    """Whether `joined` is `count` strings of 32 characters joined by spaces: as long as that, with a space
    after every 32 characters (cheaper than measuring each string)."""
    if count == 0:
        return not joined
    if len(joined) != 33 * count - 1 or not joined.isascii():
        return False
    return bool(np.all(np.frombuffer(joined.encode("ascii"), dtype=np.uint8)[32::33] == ord(" ")))


def _keys(joined: str, count: int) -> Optional[np.ndarray]:
    """S16 keys of `count` tokens `joined` by spaces (empty ones left out of `count`), or None unless all of
    them are 32 lowercase hex digits (whitespace would leave fewer than 16 bytes per token)."""
    try:
        packed = bytes.fromhex(joined)
    except ValueError:
        return None
    if len(packed) != 16 * count or any(digit in joined for digit in "ABCDEF"):
        return None
    return np.frombuffer(packed, dtype="S16")


def pack_tokens(tokens: Sequence[str]) -> Tuple[np.ndarray, FrozenSet[str]]:
    """The 32-hex-digit `tokens` as 16-byte keys (dtype S16, in order, repeats kept) and the others.

    Packs of a table's batches are collected, then made one `TokenSet`: a sort per table, not per batch.
    """
    present = list(filter(None, tokens))
    others = {""} if len(present) < len(tokens) else set()
    keys = hex_keys(present)
    if keys is None:
        distinct = set(present)
        others.update(t for t in distinct if not _HEX_TOKEN.fullmatch(t))
        keys = np.frombuffer(bytes.fromhex("".join(distinct - others)), dtype="S16")
    return keys, frozenset(others)


@dataclass(frozen=True)
class TokenSet:
    """A set of record tokens: 32-hex-digit ones (as nuScenes writes them) as sorted unique 16-byte
    keys (`keys`, dtype S16, the token's bytes), any others as strings (`others`).

    A trainval table's 2.6M tokens take 42 MB this way, and set operations are vectorised.
    """

    keys: np.ndarray
    others: FrozenSet[str] = frozenset()

    @classmethod
    def of(cls, packs: Sequence[Tuple[np.ndarray, FrozenSet[str]]]) -> "TokenSet":
        """The set of the tokens in `packs` (from `pack_tokens`)."""
        keys = np.concatenate([k for k, _ in packs]) if packs else np.empty(0, "S16")
        return cls(np.unique(keys), frozenset().union(*(o for _, o in packs)))

    def __len__(self) -> int:
        return len(self.keys) + len(self.others)

    def __sub__(self, other: "TokenSet") -> "TokenSet":
        at = np.searchsorted(other.keys, self.keys).clip(max=max(len(other.keys) - 1, 0))
        found = other.keys[at] == self.keys if len(other.keys) else np.zeros(len(self.keys), bool)
        return TokenSet(self.keys[~found], self.others - other.others)

    def without(self, token: str) -> "TokenSet":
        return TokenSet(self.keys, self.others - {token})

    def first(self) -> str:
        """The smallest token as a string (lowercase hex sorts as its bytes)."""
        smallest = [self.keys[:1].tobytes().hex()] if len(self.keys) else []
        return min([*self.others, *smallest])


def _halves(keys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The first and last 8 bytes of S16 keys as native uint64 (their order is the keys' order)."""
    words = keys.view(">u8").reshape(-1, 2)
    return words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64)


class TokenIndex:
    """The row of each record of a table by its token ('' names no record: row -1), as a dict of them
    would give it (a repeated token: its last row).

    32-hex-digit tokens are searched as the sorted first 8 bytes of their keys, each find checked
    against the last 8; other tables, tokens of another form, and the rare table whose tokens share a
    first half go through a dict.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = tokens
        self._rows: Optional[Dict[str, int]] = None
        self._sorted: Optional[np.ndarray] = None
        keys = hex_keys(tokens)
        if keys is not None:
            first, self._last = _halves(keys)
            self._order = np.argsort(first)
            ordered = first[self._order]
            if np.all(ordered[1:] != ordered[:-1]):  # unique, so the sort's order among equals never matters
                self._sorted = ordered

    def rows(self, tokens: Sequence[str], owners: Sequence[str], table: str, field: str) -> np.ndarray:
        """(N,) int64 rows of `tokens`, -1 for ''. Raises `unresolved` for the first token that names no
        record (`table.field` of the record whose token is at the same position of `owners`)."""
        joined = " ".join(tokens) if self._sorted is not None else None
        if joined is not None and _all_32(joined, len(tokens)):  # none is empty
            present, keys = np.ones(len(tokens), dtype=bool), _keys(joined, len(tokens))
        else:
            lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
            present = lengths > 0
            keys = (_keys(joined, int(np.count_nonzero(present)))
                    if joined is not None and np.all(lengths[present] == 32) else None)
        if keys is None:
            index = self._dict()
            rows = np.array([index.get(token, -2) for token in tokens], dtype=np.int64)
            rows[~present] = -1
        else:
            rows = np.full(len(tokens), -1, dtype=np.int64)
            rows[present] = self._find(keys)
        if len(rows) and rows.min() == -2:
            bad = int(np.flatnonzero(rows == -2)[0])
            raise unresolved(table, field, tokens[bad], owners[bad])
        return rows

    def _dict(self) -> Dict[str, int]:
        if self._rows is None:
            self._rows = {token: row for row, token in enumerate(self._tokens)}
        return self._rows

    def _find(self, keys: np.ndarray) -> np.ndarray:
        """Rows of S16 `keys`, -2 where no record has the key (the searched halves are sorted first: a
        search of sorted values runs several times faster)."""
        if not len(keys) or not len(self._sorted):
            return np.full(len(keys), -2, dtype=np.int64)
        first, last = _halves(keys)
        order = np.argsort(first)
        at = np.empty(len(first), dtype=np.int64)
        at[order] = np.searchsorted(self._sorted, first[order])
        at = at.clip(max=len(self._sorted) - 1)
        candidate = self._order[at]
        return np.where((self._sorted[at] == first) & (self._last[candidate] == last), candidate, -2)
