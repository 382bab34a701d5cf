"""Names the user gives (scenes, tokens, categories, labels, sensors) checked against what the data holds.

`check_names` (and `unknown_message`, for a check that reports instead of raising) is the one check
every flag and config file that names records goes through: an unknown name is an error that lists
every such name with the closest existing ones, so a typo (`scene-916` for `scene-0916`) is caught and
the right name offered.
"""

from __future__ import annotations

import difflib
import re
from typing import Collection, Iterable, List, Optional

from occprep.errors import OccprepError

_NUMBER = re.compile(r"\d+")
SHOW = 8
"""How many unknown names an error lists before '… (N in total)'."""


def _normalised(name: str) -> str:
    """Case and zero padding folded: 'Scene-916' and 'scene-0916' compare equal."""
    return _NUMBER.sub(lambda m: str(int(m.group())), name.casefold())


def closest(name: str, known: Collection[str], n: int = 3) -> List[str]:
    """Up to `n` names of `known` that `name` most likely meant, best first.

    Names equal to it up to case and zero padding, when there are any; else difflib's closest matches.
    """
    folded = _normalised(name)
    exact = sorted(k for k in known if _normalised(k) == folded)
    return exact[:n] or difflib.get_close_matches(name, list(known), n=n, cutoff=0.6)


def describe_unknown(names: Iterable[str], known: Collection[str]) -> str:
    """'a (did you mean b?), c' for the unknown `names`, at most `SHOW` of them."""
    names = list(dict.fromkeys(names))
    parts = []
    for name in names[:SHOW]:
        near = closest(name, known)
        parts.append(f"{name} (did you mean {' or '.join(near)}?)" if near else name)
    more = f", … ({len(names)} in total)" if len(names) > SHOW else ""
    return ", ".join(parts) + more


def unknown_names(given: Iterable[str], known: Collection[str]) -> List[str]:
    """The names of `given` that are not in `known`, in order, without repeats."""
    known = known if isinstance(known, (set, frozenset, dict)) else set(known)
    return [name for name in dict.fromkeys(given) if name not in known]


def unknown_message(given: Iterable[str], known: Collection[str], what: str, where: str, fix: str,
                    among: str = "in the data") -> Optional[str]:
    """One line listing every name of `given` missing from `known`, with suggestions; None when all are known.

    `what` names the records ('scene', 'category'); `where` the flag or file that named them;
    `fix` ends the message (what to change); `among` says what `known` is.
    """
    unknown = unknown_names(given, known)
    if not unknown:
        return None
    return f"{where}: {len(unknown)} {what}(s) not {among}: {describe_unknown(unknown, known)}; {fix}"


def check_names(given: Iterable[str], known: Collection[str], what: str, where: str, fix: str,
                among: str = "in the data") -> None:
    """Raise `unknown_message` as an error when some name of `given` is not in `known`."""
    message = unknown_message(given, known, what, where, fix, among)
    if message:
        raise OccprepError(message)

