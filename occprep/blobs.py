"""Up-front check that sensor files exist: one directory listing per folder, not a stat per file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from occprep.errors import OccprepError
from occprep.reporting import Reporter


def missing_files(root: Path, filenames: Sequence[str], reporter: Reporter) -> np.ndarray:
    """(N,) bool: which `filenames` (relative to `root`) are not in their folder."""
    rows_of_folder: Dict[str, List[int]] = {}
    for row, filename in enumerate(filenames):
        rows_of_folder.setdefault(os.path.dirname(filename), []).append(row)
    missing = np.zeros(len(filenames), dtype=bool)
    with reporter.progress(sorted(rows_of_folder.items()), desc="file check", unit="folder") as folders:
        for folder, rows in folders:
            try:
                with os.scandir(Path(root) / folder) as entries:
                    present = {entry.name for entry in entries}
            except (FileNotFoundError, NotADirectoryError):
                present = set()
            except OSError as exc:
                raise OccprepError(f"{Path(root) / folder}: cannot list the folder ({exc.strerror}); fix its "
                                   "permissions or pass --no-file-check") from None
            for row in rows:
                missing[row] = os.path.basename(filenames[row]) not in present
    return missing
