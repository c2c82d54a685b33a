"""An account read through its head and written as its header plus changed rows.

A state store keeps an account with positions as a header and one row per position under
a stamp that changes with the rows (``backends.state``). A transition reads the head only;
``read_account`` rebuilds the account from the positions this process decoded for that
stamp (``pipeline.decoded``), and reads the whole account only when it knows none (another
process changed the rows, or this one never saw them). ``account_write`` plans the commit:
the header and the rows one open or close changed (``domain.positionbook.Edit``), so
neither the read nor the write grows with the number of positions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from execflow.backends.state import RowChanges, Versioned, Write, new_stamp
from execflow.domain.codec import account_document, account_header_document, position_to_dict
from execflow.domain.models import Account, Position
from execflow.domain.positionbook import edit_of
from execflow.pipeline.decoded import DecodedRefdata

__all__ = ["AccountWrite", "account_write", "read_account"]


async def read_account(
    decoded: DecodedRefdata,
    account_id: str,
    found: Versioned,
    whole: Callable[[], Awaitable[Versioned]],
) -> tuple[Account, Versioned]:
    """The account ``found`` (a head or a whole document) stands for, and the read it came
    from (``found``, or the whole document ``whole()`` read when the head's positions are
    unknown here: its version is the one to commit against)."""
    account = decoded.account_of_head(account_id, found)
    if account is not None:
        return account, found
    read = await whole()
    return decoded.whole_account(account_id, read), read


@dataclass(frozen=True, slots=True)
class AccountWrite:
    """An account's write and what to remember of it once committed."""

    write: Write
    account: Account
    stamp: str | None
    """The rows' stamp after the commit; ``None`` for a whole write (the store makes one)."""

    def remember(self, decoded: DecodedRefdata) -> None:
        """After the commit: this process knows the account it wrote (``pipeline.decoded``)."""
        if self.stamp is None:
            decoded.remember_account(self.write.data, self.account)
        else:
            decoded.remember_head(self.stamp, self.write.data, self.account)


def account_write(read: Versioned, before: Account, after: Account) -> AccountWrite:
    """The write of ``after``, computed from ``before`` as ``read`` (version, stamp) gave it.

    Header plus changed rows when the account is kept as rows and ``after``'s positions
    are ``before``'s with one edit (or the same); else the whole document (an account
    stored by an older release is converted so).
    """
    account_id = after.account_id
    rows = (
        None if read.stamp is None else _row_changes(before.positions, after.positions, read.stamp)
    )
    if read.stamp is None or rows is None:
        data = account_document(after)
        return AccountWrite(Write("account", account_id, read.version, data), after, None)
    header = account_header_document(after)
    write = Write("account", account_id, read.version, header, rows)
    return AccountWrite(write, after, rows.stamp or read.stamp)


def _row_changes(
    before: tuple[Position, ...], after: tuple[Position, ...], read_stamp: str
) -> RowChanges | None:
    """The rows that make ``after`` of ``before`` (read at ``read_stamp``); ``None`` when
    not one known edit."""
    if after is before:
        return RowChanges({}, read_stamp=read_stamp)
    edit = edit_of(after)
    if edit is None or edit.parent is not before:
        return None
    removed = [p.order_id for p in before[edit.at : edit.at + edit.removed]]
    put = {after[edit.at].order_id: position_to_dict(after[edit.at])} if edit.inserted else {}
    return RowChanges(put, removed, new_stamp(), read_stamp)
