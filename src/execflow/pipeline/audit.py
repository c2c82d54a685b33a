"""Verifying the audit chains stored in the database (``execflow audit verify``).

Each account's chain is read by position, in pages, and walked by the pure
``ChainVerifier``: memory stays flat whatever the number of events. Every account is
walked to its first broken link; the report lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from execflow.backends.database import Database
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
    """Walk every account's chain (or only ``account_id``'s) and name each first break."""
    accounts = [account_id] if account_id is not None else await database.chain_accounts()
    broken: list[BrokenLink] = []
    heads: list[ChainHead] = []
    events = 0
    checked = 0
    for account in accounts:
        verifier = ChainVerifier(account)
        walked = 0
        async for row in database.iter_chain(account):
            walked += 1
            if verifier.feed(row) is not None:
                break
        head = await database.chain_head(account)
        unchained = await database.first_unchained(account)
        if walked == 0 and head is None and unchained is None:
            continue  # nothing stored for this account (an unknown --account)
        checked += 1
        events += walked
        found = verifier.finish(head, unchained)
        if found is not None:
            broken.append(found)
        elif head is not None:
            heads.append(head)
    return AuditReport(checked, events, tuple(broken), tuple(heads))
