"""Whether files exist, answered from folder listings: one `os.scandir` per folder, not a stat per file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

import numpy as np

from occprep.errors import OccprepError
from occprep.reporting import Reporter


class FolderListing:
    """The names in folders, each folder listed once (`os.scandir`) and kept for the object's lifetime.

    Listings of folders that exist are kept; a folder that is not there is not remembered: asking again
    costs one failed call, as a stat would, and sees the folder once it is made.
    """

    def __init__(self) -> None:
        self._names: Dict[str, FrozenSet[str]] = {}
        self._links: Dict[str, FrozenSet[str]] = {}
        """Folder -> the names in it that are symbolic links (their target may not exist)."""

    def names(self, folder: str) -> Optional[FrozenSet[str]]:
        """The names in `folder` (files, folders, links, broken ones too), or None when it is not a folder.

        Raises OSError when the folder exists but cannot be listed (permissions), ValueError for a path
        with a NUL byte.
        """
        if folder not in self._names:
            try:
                with os.scandir(folder) as entries:
                    listed = [(entry.name, entry.is_symlink()) for entry in entries]
            except (FileNotFoundError, NotADirectoryError):
                return None
            self._names[folder] = frozenset(name for name, _ in listed)
            self._links[folder] = frozenset(name for name, link in listed if link)
        return self._names[folder]

    def exists(self, path: str) -> bool:
        """What `os.path.exists(path)` answers (links followed), from the listing of its folder.

        Stat'ed instead: paths ending in a folder step (`a/`, `a/..`), paths in a folder that cannot be
        listed (e.g. execute-only), and names that are links (their target may be missing).
        """
        folder, name = os.path.split(path)
        folder = folder or os.curdir
        if name in ("", os.curdir, os.pardir):
            return os.path.exists(path)
        try:
            names = self.names(folder)
        except (OSError, ValueError):
            return os.path.exists(path)
        if names is None or name not in names:
            return False
        return name not in self._links[folder] or os.path.exists(path)


def missing_files(root: Path, filenames: Sequence[str], reporter: Reporter, engine=None) -> np.ndarray:
    """(N,) bool: which `filenames` (relative to `root`) are not in their folder. Each folder is listed
    once, by `engine` (`occprep.engines`: one task per folder) or in this process. Raises OccprepError
    for a folder that exists but cannot be listed."""
    rows_of_folder: Dict[str, List[int]] = {}
    for row, filename in enumerate(filenames):
        rows_of_folder.setdefault(os.path.dirname(filename), []).append(row)
    folders = sorted(rows_of_folder.items())
    tasks = [(str(Path(root) / folder), [os.path.basename(filenames[row]) for row in rows]) for folder, rows in folders]
    missing = np.zeros(len(filenames), dtype=bool)
    if engine is None:
        with reporter.progress(tasks, desc="file check", unit="folder") as progress:
            found = [missing_in_folder(task) for task in progress]
    else:
        found = list(engine.map(missing_in_folder, tasks, "file check"))
    for (_, rows), absent in zip(folders, found):
        missing[rows] = absent
    return missing


def missing_in_folder(task: Tuple[str, List[str]]) -> List[bool]:
    """(folder, names) -> whether each name is not in the folder (one listing; a missing folder holds none)."""
    folder, names = task
    try:
        present = FolderListing().names(folder) or frozenset()
    except OSError as exc:
        raise OccprepError(f"{folder}: cannot list the folder ({exc.strerror}); fix its permissions or pass "
                           "--no-file-check") from None
    return [name not in present for name in names]
