"""Verifying the audit chains stored in the database (``execflow audit verify``).

Each account's chain is read by position, in pages, and walked by the pure
``ChainVerifier``: memory stays flat whatever the number of events. Every account is
walked to its first broken link; the report lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from execflow.backends.database import Database, StoredEvent
from execflow.domain.audit import BrokenLink, ChainHead, ChainVerifier

__all__ = ["AuditReport", "verify_chains"]


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What ``verify_chains`` checked and the first broken link of each broken account."""

    accounts: int
    events: int
    broken: tuple[BrokenLink, ...]
    heads: tuple[ChainHead, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """No account has a broken link."""
        return not self.broken

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: verdict, counts, broken links and every verified head (for anchoring)."""
        return {
            "ok": self.ok,
            "accounts": self.accounts,
            "events": self.events,
            "broken": [b.to_dict() for b in self.broken],
            "heads": [
                {"account_id": h.account_id, "length": h.length, "head_hash": h.head_hash}
                for h in self.heads
            ],
        }


async def verify_chains(database: Database, account_id: str | None = None) -> AuditReport:
    """Walk every account's chain (or only ``account_id``'s) and name each first break.

    Safe beside running db writers: each account's head is read first and the chain
    walked up to it (a head is committed with the events it covers); events appended
    meanwhile are left for the next run. An event past a head that did not move while
    it was read was not appended by a writer, and is a break.
    """
    accounts = [account_id] if account_id is not None else await database.chain_accounts()
    broken: list[BrokenLink] = []
    heads: list[ChainHead] = []
    events = 0
    checked = 0
    for account in accounts:
        head = await database.chain_head(account)
        verifier = ChainVerifier(account)
        walked = 0
        async for row in database.iter_chain(account, upto=None if head is None else head.length):
            walked += 1
            if verifier.feed(row) is not None:
                break
        unchained = await database.first_unchained(account)
        if walked == 0 and head is None and unchained is None:
            continue  # nothing stored for this account (an unknown --account)
        checked += 1
        events += walked
        past = None if head is None else await _past_head(database, head)
        found = verifier.finish(head, unchained, past)
        if found is not None:
            broken.append(found)
        elif head is not None:
            heads.append(head)
    return AuditReport(checked, events, tuple(broken), tuple(heads))


async def _past_head(database: Database, head: ChainHead) -> StoredEvent | None:
    """The first event after ``head``, unless a writer moved the head meanwhile."""
    async for row in database.iter_chain(head.account_id, after=head.length, batch_size=1):
        if await database.chain_head(head.account_id) == head:
            return row
        return None
    return None
