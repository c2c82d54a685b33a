"""``/v1/accounts/{account_id}`` and ``/v1/quotes``: balances, equity, positions, prices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from execflow.api.auth import context, visible
from execflow.api.queries import read_account, read_quotes
from execflow.api.routes_orders import PROBLEMS, Reader
from execflow.api.schemas import AccountOut, QuotesOut
from execflow.api.views import account_out, quote_out

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["accounts"])

AccountPath = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$", examples=["live:6"])
]


@router.get(
    "/accounts/{account_id}",
    response_model=AccountOut,
    responses=PROBLEMS,
    summary="Balance, used and free margin, equity and positions at live quotes",
)
async def get_account(account_id: AccountPath, request: Request, key: Reader) -> AccountOut:
    """The account now: its positions valued at the latest quotes of the state store."""
    visible(key, account_id, "account", account_id)
    view = await read_account(context(request).services, account_id)
    visible(key, None if view is None else account_id, "account", account_id)
    assert view is not None
    return account_out(view)


@router.get("/quotes", response_model=QuotesOut, responses=PROBLEMS, summary="Latest quotes")
async def get_quotes(request: Request, key: Reader) -> QuotesOut:
    """Every symbol's latest LP bid / ask."""
    del key  # any key with the read scope: quotes belong to no account
    quotes = await read_quotes(context(request).services)
    return QuotesOut(items=[quote_out(q) for q in quotes])
