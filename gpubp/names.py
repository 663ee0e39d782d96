"""Looking a name up in one of gpubp's name tables (activations, losses, optimizers, backends).

Every table is a dict from name to entry; :func:`lookup` is the one way a user's name is
resolved in them, so every table refuses a wrong name with the same two errors: a TypeError
for something that is not a name, a ValueError listing the valid names for an unknown one.
"""
from __future__ import annotations

from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: Any, argument: str, kind: str, fold_case: bool = False) -> T:
    """``table[name]``; ``fold_case`` reads ``name`` without surrounding blanks and in lower case.

    Args:
        argument: how the caller's argument is called in messages (``activation[1]``, ``--loss``).
        kind: what the table holds, for the message (``activation``, ``loss``, ...).
    """
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be {_article(kind)} {kind} name (str), one of {', '.join(table)}; "
                        f"got {type(name).__name__} {name!r}")
    key = name.strip().lower() if fold_case else name
    try:
        return table[key]
    except KeyError:
        raise ValueError(f"unknown {argument} {name!r}: expected one of {', '.join(table)}") from None


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
