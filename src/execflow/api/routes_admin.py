"""``/v1/admin``: API key management (admin scope)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from execflow.api.auth import context, require
from execflow.api.calls import Outcome, answer_of, mutate
from execflow.api.idempotency import Answer
from execflow.api.keys import ApiKey, Scope, mint_key, parse_scopes
from execflow.api.routes_orders import PROBLEMS, IdempotencyKey
from execflow.api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from execflow.api.views import key_out
from execflow.errors import ApiError

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"])

Admin = Annotated[ApiKey, Depends(require(Scope.ADMIN))]
KeyId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=PROBLEMS,
    summary="Create an API key (its token is in this answer only)",
)
async def create_key(
    body: ApiKeyCreate, request: Request, key: Admin, idempotency_key: IdempotencyKey
) -> Response:
    """A new key with the given scopes and accounts (``*``: every account)."""
    ctx = context(request)

    async def call(outcome: Outcome) -> Answer:
        del outcome
        minted = await asyncio.to_thread(
            mint_key, body.name, parse_scopes(body.scopes), body.accounts, ctx.services.clock.now()
        )
        await ctx.store.add_key(minted.record)
        ctx.log.info(
            "API:KEY_CREATED",
            key_id=minted.record.key_id,
            by=key.key_id,
            scopes=",".join(minted.record.scopes),
            accounts=",".join(minted.record.accounts),
        )
        shown = key_out(minted.record).model_dump()
        answer = answer_of(201, ApiKeyCreated(**shown, token=minted.token))
        # never kept in the database: a replay answers the same key, without its token
        kept = ApiKeyCreated(**shown, token=None).model_dump_json().encode()
        return Answer(answer.status, answer.body, answer.headers, kept_body=kept)

    return await mutate(request, ctx, key, idempotency_key, "create_api_key", body, call)


@router.get(
    "/api-keys", response_model=list[ApiKeyOut], responses=PROBLEMS, summary="List API keys"
)
async def list_keys(request: Request, key: Admin) -> list[ApiKeyOut]:
    """Every key (revoked ones too), without secrets."""
    del key
    return [key_out(r) for r in await context(request).store.list_keys()]


@router.delete(
    "/api-keys/{key_id}",
    status_code=200,
    response_model=ApiKeyOut,
    responses=PROBLEMS,
    summary="Revoke an API key",
)
async def revoke_key(
    key_id: KeyId, request: Request, key: Admin, idempotency_key: IdempotencyKey
) -> Response:
    """The key stops working at once here, within ``api_key_cache_s`` on other instances."""
    ctx = context(request)

    async def call(outcome: Outcome) -> Answer:
        del outcome
        revoked = await ctx.store.revoke_key(key_id, ctx.services.clock.now())
        record = await ctx.store.get_key(key_id)
        if record is None:
            raise ApiError(404, "unknown_api_key", f"no API key {key_id!r}")
        ctx.verifier.forget(key_id)
        if revoked:
            ctx.log.info("API:KEY_REVOKED", key_id=key_id, by=key.key_id)
        return answer_of(200, key_out(record))

    return await mutate(request, ctx, key, idempotency_key, "revoke_api_key", None, call)
