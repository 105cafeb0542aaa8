"""Who wrote each example and when: the per-example fields `user`, `order` and `group`.

    user    str    the example's author (a natural client: `fednlp partition --method natural --field user`)
    order   float  when it was written, as a number that sorts the user's examples in time
    group   str    a protected group for group-fairness statistics (`fednlp fairness` reads it)

Readers fill them where the source knows them (20 Newsgroups' From: header, AESLC's mailbox owner) and the
generic readers from --user-column, --time-column and --group-column.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

from fednlp.data.readers.layout import BadRecord

#: field -> (what its value is, the option naming its column in the generic readers)
USER_FIELDS = {"user": ("user", "--user-column"), "order": ("time", "--time-column"),
               "group": ("group", "--group-column")}

_ANGLE_ADDRESS = re.compile(r"<([^<>]*)>")
_COMMENT = re.compile(r"\([^()]*\)")


def normalised_address(from_header: str) -> str:
    """The sender's address of an RFC 822 From: value, lower-cased: the same person whatever display name.

    `Jon Leech <leech@cs.unc.edu>` and `leech@cs.unc.edu (Jon Leech)` are both leech@cs.unc.edu. Usenet
    headers are not all RFC 822 (UUCP paths `host!user`, `a@b@c`, a bare name): `email.utils.parseaddr`
    returns '' for 23 posts of 20 Newsgroups' training split, which would merge unrelated authors into
    one, so the rule is the plain one: the <address> if there is one, else the value without its
    (comments), else the comment itself (a value that is only a comment still names someone).
    """
    value = " ".join(from_header.split())
    angle = _ANGLE_ADDRESS.search(value)
    if angle and angle[1].strip():
        address = angle[1]
    else:
        address = _COMMENT.sub("", value).strip() or value
    return address.strip().lower()


def scaled_ranks(groups: Sequence[Hashable], keys: Sequence[Any]) -> list[float]:
    """Each key's rank among the keys of its group, scaled to [0, 1]: the group's first is 0, its last 1.

    Equal keys share their mean rank; a group of one sits at 0.5. Keys must be orderable within a group.
    """
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    scaled = [0.5] * len(keys)
    for indices in members.values():
        indices.sort(key=lambda i: keys[i])
        last = len(indices) - 1
        start = 0
        while start <= last and last > 0:  # runs of equal keys, in sorted order
            end = start
            while end < last and keys[indices[end + 1]] == keys[indices[start]]:
                end += 1
            for i in indices[start : end + 1]:
                scaled[i] = (start + end) / 2 / last
            start = end + 1
    return scaled


def number_sort_key(name: str) -> tuple[int, int, str]:
    """Numbers in file names (article 9 before article 10) sort as numbers, anything else after them."""
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def user_cell(value: Any, column: str) -> str:
    """A user or group value: any non-empty scalar, as text."""
    if isinstance(value, (list, dict)):
        raise BadRecord(f"column {column!r} holds a JSON {'object' if isinstance(value, dict) else 'list'}; "
                        "expected a string or number")
    if value is None or not str(value).strip():
        raise BadRecord(f"row has no value in column {column!r}; expected a non-empty value")
    return str(value)


def order_cell(value: Any, column: str) -> float:
    """A time value: a finite number (or text that is one); dates must be given as numbers."""
    if isinstance(value, bool) or isinstance(value, (list, dict)) or value is None:
        number = None
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is None or not math.isfinite(number):
        shown = str(value)[:40]
        raise BadRecord(f"column {column!r} (--time-column) holds {shown!r}; expected a finite number "
                        "(a timestamp, an index)")
    return number


def user_fields_of(row: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """The user, order and group fields of one row, from the columns named for them (field -> column)."""
    cells = {"user": user_cell, "order": order_cell, "group": user_cell}
    return {name: cells[name](row.get(column), column) for name, column in columns.items()}


def user_columns(options: Any) -> dict[str, str]:
    """field -> column of the user fields the reader options name (ReaderOptions' *_column)."""
    named = {"user": options.user_column, "order": options.time_column, "group": options.group_column}
    return {name: column for name, column in named.items() if column}
