"""The shape every mutating route shares: idempotency, refusals as problems, one log line."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter

import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from execflow.api.context import ApiContext
from execflow.api.idempotency import Answer, fingerprint
from execflow.api.keys import ApiKey
from execflow.api.problems import PROBLEM_JSON, intake_status, problem_body
from execflow.errors import ApiError
from execflow.pipeline.intake import IntakeResult

__all__ = ["Outcome", "answer_of", "intake_answer", "mutate"]


@dataclass(slots=True)
class Outcome:
    """What the call learned on the way, for its log line."""

    account_id: str | None = None
    order_id: str | None = None


def answer_of(status: int, model: BaseModel, headers: dict[str, str] | None = None) -> Answer:
    """A JSON answer."""
    return Answer(status, model.model_dump_json().encode(), dict(headers or {}))


def _problem_answer(exc: ApiError, instance: str) -> Answer:
    extra = {k: v for k, v in exc.fields.items() if k in ("errors",)}
    body = problem_body(exc.status, exc.code, exc.detail, instance, extra)
    headers = {}
    if "retry_after" in exc.fields:
        headers["Retry-After"] = str(exc.fields["retry_after"])
    return Answer(exc.status, orjson.dumps(body), headers)


def intake_answer(result: IntakeResult, accepted: Callable[[], Answer]) -> Answer:
    """``accepted()`` for an accepted action; a refusal as a problem with the intake's code."""
    if result.accepted:
        return accepted()
    reason = result.reason or "refused"
    raise ApiError(intake_status(reason), reason, result.detail or reason)


async def mutate(
    request: Request,
    ctx: ApiContext,
    key: ApiKey,
    idempotency_key: str | None,
    action: str,
    body: BaseModel | None,
    call: Callable[[Outcome], Awaitable[Answer]],
) -> Response:
    """Run ``call`` once per (key, Idempotency-Key, body); log one ``API:CALL`` line."""
    idem = ctx.idempotency.check_key(idempotency_key)
    canonical = (
        b"" if body is None else orjson.dumps(body.model_dump(), option=orjson.OPT_SORT_KEYS)
    )
    # ``request.url.path`` without building the whole URL (the routes' path parameters
    # admit none of the characters it would escape)
    instance: str = request.scope["path"]
    print_ = fingerprint(request.method, instance, canonical)
    outcome = Outcome()
    started = perf_counter()

    async def guarded() -> Answer:
        try:
            return await call(outcome)
        except ApiError as exc:
            return _problem_answer(exc, instance)

    try:
        answer = await ctx.idempotency.run(key.key_id, idem, print_, guarded)
    except ApiError as exc:
        answer = _problem_answer(exc, instance)
    except Exception:
        _log(ctx, key, action, idem, outcome, 500, "internal_error", replayed=False, elapsed_ms=0.0)
        raise
    code = "ok"
    media = "application/json"
    if answer.status >= 400:
        media = PROBLEM_JSON
        try:
            code = str(orjson.loads(answer.body).get("code", "error"))
        except orjson.JSONDecodeError:
            code = "error"
    elapsed_ms = round((perf_counter() - started) * 1000, 3)
    _log(
        ctx,
        key,
        action,
        idem,
        outcome,
        answer.status,
        code,
        replayed=answer.replayed,
        elapsed_ms=elapsed_ms,
    )
    headers = dict(answer.headers)
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(answer.body, status_code=answer.status, media_type=media, headers=headers)


def _log(
    ctx: ApiContext,
    key: ApiKey,
    action: str,
    idem: str,
    outcome: Outcome,
    status: int,
    code: str,
    *,
    replayed: bool,
    elapsed_ms: float,
) -> None:
    fields: dict[str, object] = {
        "key_id": key.key_id,
        "action": action,
        "result": status,
        "code": code,
        "idempotency_key": idem,
    }
    if outcome.account_id is not None:
        fields["user"] = outcome.account_id
    if outcome.order_id is not None:
        fields["order_id"] = outcome.order_id
    if replayed:
        fields["replayed"] = True
    if status < 400:
        ctx.log.success("API:CALL", processing_time_ms=elapsed_ms, **fields)
    else:
        ctx.log.info("API:CALL", processing_time_ms=elapsed_ms, **fields)
