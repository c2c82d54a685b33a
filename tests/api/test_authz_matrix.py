"""Authorization matrix: every endpoint x every credential x own / foreign account.

Endpoints: every route but the stream (its own tests) and the key-less health routes.
Credentials: a key with only ``read``, only ``trade``, only ``admin`` (each on live:6),
no key, a malformed token, a well-formed token with a wrong secret, a revoked key.
Expected: 401 for the four bad credentials (own or foreign alike); 403 for a genuine key
without the route's scope; with the scope, 404 for anything of another account (never
403: existence must not leak) and the route's own success status for live:6.

The world is built once (pipeline running, the LP played by hand through ``Flow``): a
fresh target per mutating success case, so each success is a real intake acceptance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from execflow.domain.enums import LegKind
from execflow.pipeline.services import Services
from tests.api.conftest import Api
from tests.pipeline.flow import Flow

OWN, FOREIGN = "live:6", "live:7"
CREDENTIALS = ("read", "trade", "admin", "missing", "malformed", "wrong_secret", "revoked")
BAD = {"missing", "malformed", "wrong_secret", "revoked"}


@dataclass(frozen=True)
class Endpoint:
    """One route: how to call it on a target, the scope it needs, its success status."""

    name: str
    scope: str
    success: int
    # target kind -> (method, path, body); None: the route has no foreign form
    build: Callable[[dict[str, str], str], tuple[str, str, Any]]
    account_bound: bool = True


def _order(action: str, method: str = "POST", body: Any = None) -> Callable[..., Any]:
    def build(targets: dict[str, str], side: str) -> tuple[str, str, Any]:
        order_id = targets[f"{side}:{action}"]
        suffix = "" if action in ("read", "events") else f"/{action.split('_')[-1]}"
        if action == "events":
            suffix = "/events"
        if action == "resolve":
            return method, f"/v1/admin/orders/{order_id}/resolve", body
        return method, f"/v1/orders/{order_id}{suffix}", body

    return build


def _place(targets: dict[str, str], side: str) -> tuple[str, str, Any]:
    account = OWN if side == "own" else FOREIGN
    body = {"account_id": account, "symbol": "EURUSD", "side": "BUY", "qty": "0.10"}
    return "POST", "/v1/orders", body


def _list(targets: dict[str, str], side: str) -> tuple[str, str, Any]:
    return "GET", f"/v1/orders?account_id={OWN if side == 'own' else FOREIGN}", None


def _account(targets: dict[str, str], side: str) -> tuple[str, str, Any]:
    return "GET", f"/v1/accounts/{OWN if side == 'own' else FOREIGN}", None


ENDPOINTS = (
    Endpoint("place_order", "trade", 201, _place),
    Endpoint("modify_order", "trade", 202, _order("modify", body={"price": "1.08100"})),
    Endpoint("cancel_order", "trade", 202, _order("cancel")),
    Endpoint("close_position", "trade", 202, _order("close")),
    Endpoint("set_sl", "trade", 202, _order("set_sl", "PUT", {"price": "1.08000"})),
    Endpoint("cancel_sl", "trade", 202, _order("cancel_sl", "DELETE")),
    Endpoint("set_tp", "trade", 202, _order("set_tp", "PUT", {"price": "1.09500"})),
    Endpoint("cancel_tp", "trade", 202, _order("cancel_tp", "DELETE")),
    Endpoint("get_order", "read", 200, _order("read", "GET")),
    Endpoint("get_order_events", "read", 200, _order("events", "GET")),
    Endpoint("list_orders", "read", 200, _list),
    Endpoint("get_account", "read", 200, _account),
    Endpoint(
        "resolve_order",
        "admin",
        200,
        _order("resolve", body={"as": "rejected", "reason": "LP lost it"}),
    ),
    Endpoint(
        "get_quotes", "read", 200, lambda t, s: ("GET", "/v1/quotes", None), account_bound=False
    ),
    Endpoint(
        "list_api_keys",
        "admin",
        200,
        lambda t, s: ("GET", "/v1/admin/api-keys", None),
        account_bound=False,
    ),
    Endpoint(
        "create_api_key",
        "admin",
        201,
        lambda t, s: (
            "POST",
            "/v1/admin/api-keys",
            {"name": "made", "scopes": ["read"], "accounts": [OWN]},
        ),
        account_bound=False,
    ),
    Endpoint(
        "list_dlq", "admin", 200, lambda t, s: ("GET", "/v1/admin/dlq", None), account_bound=False
    ),
    Endpoint(
        "replay_dlq",
        "admin",
        200,
        lambda t, s: ("POST", "/v1/admin/dlq/replay", {"dry_run": True}),
        account_bound=False,
    ),
    Endpoint(
        "list_stuck",
        "admin",
        200,
        lambda t, s: ("GET", "/v1/admin/stuck?older_than_s=0", None),
        account_bound=False,
    ),
    Endpoint(
        "ops_health",
        "admin",
        200,
        lambda t, s: ("GET", "/v1/admin/health", None),
        account_bound=False,
    ),
    Endpoint(
        "list_queues",
        "admin",
        200,
        lambda t, s: ("GET", "/v1/admin/queues", None),
        account_bound=False,
    ),
    Endpoint(
        "lp_quality",
        "admin",
        200,
        lambda t, s: ("GET", "/v1/admin/lp-quality", None),
        account_bound=False,
    ),
    Endpoint(
        "order_trace",
        "admin",
        200,
        lambda t, s: ("GET", f"/v1/admin/orders/{t[f'{s}:read']}/trace", None),
    ),
    Endpoint(
        "revoke_api_key",
        "admin",
        200,
        lambda t, s: ("DELETE", f"/v1/admin/api-keys/{t['own:spare_key']}", None),
        account_bound=False,
    ),
)


def expected(endpoint: Endpoint, credential: str, side: str) -> int:
    """The status the matrix demands."""
    if credential in BAD:
        return 401
    if credential != endpoint.scope:
        return 403
    return 404 if side == "foreign" else endpoint.success


async def _targets(flow: Flow, api: Api) -> dict[str, str]:
    """A fresh own order per mutating success case, and foreign ones of live:7."""
    targets: dict[str, str] = {}
    targets["own:modify"] = (await flow.resting()).order_id
    targets["own:cancel"] = (await flow.resting()).order_id
    targets["own:close"] = (await flow.opened()).order_id
    targets["own:set_sl"] = (await flow.opened()).order_id
    targets["own:cancel_sl"] = (await flow.leg_active(LegKind.SL)).order_id
    targets["own:set_tp"] = (await flow.opened()).order_id
    targets["own:cancel_tp"] = (await flow.leg_active(LegKind.TP)).order_id
    targets["own:read"] = targets["own:events"] = targets["own:close"]
    targets["own:resolve"] = (await flow.open_request()).order_id  # unanswered: resolvable
    foreign = await flow.intake.open_market(FOREIGN, "EURUSD", "BUY", "0.10")
    assert foreign.accepted and foreign.order_id is not None
    await flow.settle()
    for action in (
        "modify", "cancel", "close", "set_sl", "cancel_sl", "set_tp", "cancel_tp", "resolve"
    ):  # fmt: skip
        targets[f"foreign:{action}"] = foreign.order_id
    targets["foreign:read"] = targets["foreign:events"] = foreign.order_id
    spare = await api.key("read", OWN, name="spare")
    targets["own:spare_key"] = spare.split("_")[1]
    return targets


async def _credentials(api: Api) -> dict[str, str | None]:
    tokens: dict[str, str | None] = {
        scope: await api.key(scope, OWN) for scope in ("read", "trade", "admin")
    }
    genuine = tokens["read"]
    assert genuine is not None
    key_id = genuine.split("_")[1]
    tokens["missing"] = None
    tokens["malformed"] = "not-a-key"
    tokens["wrong_secret"] = f"ef_{key_id}_{'A' * 43}"
    revoked = await api.key("read,trade,admin", f"{OWN},{FOREIGN}", name="revoked")
    tokens["revoked"] = revoked
    ok = await api.call("GET", "/v1/quotes", revoked)
    assert ok.status_code == 200  # genuine before the revocation (and cached by the verifier)
    admin = tokens["admin"]
    gone = await api.call("DELETE", f"/v1/admin/api-keys/{revoked.split('_')[1]}", admin)
    assert gone.status_code == 200, gone.text
    return tokens


async def test_authorization_matrix(services: Services, api: Api) -> None:
    async with Flow.running(services) as flow:
        targets = await _targets(flow, api)
        tokens = await _credentials(api)
        mismatches: list[str] = []
        cases = 0
        for endpoint in ENDPOINTS:
            sides = ("own", "foreign") if endpoint.account_bound else ("own",)
            for side in sides:
                for credential in CREDENTIALS:
                    method, path, body = endpoint.build(targets, side)
                    response = await api.call(method, path, tokens[credential], body)
                    await flow.settle()
                    cases += 1
                    want = expected(endpoint, credential, side)
                    if response.status_code != want:
                        mismatches.append(
                            f"{endpoint.name} {side} {credential}: "
                            f"{response.status_code} != {want} {response.text[:160]}"
                        )
                    elif want >= 400:
                        assert response.headers["content-type"] == "application/problem+json"
        assert not mismatches, "\n".join(mismatches)
        assert cases == 14 * 2 * 7 + 10 * 7 == 266
