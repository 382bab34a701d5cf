"""Finding published ground truth paths on disk, from folder listings (`occprep.blobs.FolderListing`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Tuple

from occprep.blobs import FolderListing


class PathLocator:
    """Finds published paths on disk: absolute as is; relative against the cwd, then the occ root's chain.

    Published paths may be relative to whatever directory the publisher worked in; the one rule: an
    absolute path is itself; a relative path is tried against the current directory first, then against
    the occupancy root and each of its parents, nearest first.

    Existence is answered from folder listings: each candidate folder is listed once and kept for the
    locator's lifetime (folders that do not exist are asked again), so finding N files in F folders
    costs about F listings, not N stats per anchor tried.
    """

    def __init__(self, occ_root: Path, cwd: Optional[Path] = None,
                 exists: Optional[Callable[[str], bool]] = None) -> None:
        root = Path(os.path.abspath(occ_root))
        self.anchors: Tuple[str, ...] = tuple(map(str, (Path(cwd or os.getcwd()), root, *root.parents)))
        self.root_name = f"{os.sep}{root.name}{os.sep}"
        self.exists = exists or FolderListing().exists
        """Whether a path exists (default: from folder listings; `os.path.exists` answers the same)."""

    def locate(self, text: str) -> Optional[str]:
        """The absolute, normalised location of `text` if it exists, else None (strings: this runs per file).

        A relative path that names the occupancy root's folder (`./data/occ_gt_release_v1_0/train/...`,
        as the release publishes them) is also tried from the root itself, wherever it was extracted.
        """
        for anchor in ("",) if os.path.isabs(text) else self.anchors:
            candidate = os.path.join(anchor, text)
            if self.exists(candidate):
                return os.path.normpath(candidate)
        at = f"{os.sep}{text}".rfind(self.root_name)
        if not os.path.isabs(text) and at >= 0:
            candidate = os.path.join(self.anchors[1], f"{os.sep}{text}"[at + len(self.root_name):])
            if self.exists(candidate):
                return os.path.normpath(candidate)
        return None

    def describe(self) -> str:
        """The search rule, for error messages."""
        return (f"looked relative to {self.anchors[0]} (cwd), then {self.anchors[1]} and its parents, and "
                f"after '{self.root_name.strip(os.sep)}/' from {self.anchors[1]}")
