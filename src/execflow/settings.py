"""Typed settings, read once by the entry point and passed down.

Sources, highest priority first: keyword arguments, ``EXECFLOW_*`` environment
variables, an optional TOML file (``--config`` or ``EXECFLOW_CONFIG``), defaults.
This is the only module that reads ``os.environ``, and no module writes it
(``tests/test_house.py`` scans the package for both).
"""

from __future__ import annotations

import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from execflow.errors import ConfigError

__all__ = [
    "PROMETHEUS_MULTIPROC_DIR",
    "LpRouting",
    "LpSession",
    "Settings",
    "environment_with",
    "load_settings",
    "prometheus_multiproc_dir",
    "require_services",
]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["text", "json"]

_MIB = 1024 * 1024
_TIME_OF_DAY = r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d$"
LP_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,31}$"
PROMETHEUS_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable prometheus_client's multiprocess mode writes its files under."""


class LpSession(BaseModel):
    """One LP's FIX 4.4 session (``[lps.NAME]`` in the TOML file).

    The password is a ``SecretStr``: its ``repr``, ``str`` and every dump show
    ``**********``; only the gateway's logon reads the value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(..., ge=1, le=65535)
    sender_comp_id: str = Field(..., min_length=1, pattern=r"^[!-~]+$")
    target_comp_id: str = Field(..., min_length=1, pattern=r"^[!-~]+$")
    heartbeat_s: int = Field(30, ge=1, le=3600)
    reset_on_logon: bool = False
    username: str | None = None
    password: SecretStr | None = None
    session_start: str | None = Field(
        None, pattern=_TIME_OF_DAY, description="HH:MM:SS UTC; unset with session_end: 24h"
    )
    session_end: str | None = Field(None, pattern=_TIME_OF_DAY)
    store_dir: Path = Field(Path("fix-store"), description="sequence numbers and sent messages")
    reconnect_min_s: int = Field(1, ge=1, le=3600, description="first reconnect delay")
    reconnect_max_s: int = Field(60, ge=1, le=3600, description="backoff ceiling")
    symbols: tuple[str, ...] = Field((), description="market data subscriptions (V)")

    @model_validator(mode="after")
    def _consistent(self) -> LpSession:
        if (self.session_start is None) != (self.session_end is None):
            raise ValueError("set both session_start and session_end, or neither (24h)")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self


class LpRouting(BaseModel):
    """Which LP a request goes to (``[lp_routing]``): by group and symbol, then a default.

    ``routes`` keys are ``"GROUP:SYMBOL"``, ``"GROUP:*"`` or ``"*:SYMBOL"``; the most
    specific match wins, in that order, then ``default``. With no default and no route,
    requests go to the one ``provider_requests`` queue (a single LP or the simulator).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: str | None = Field(None, pattern=LP_NAME_PATTERN)
    routes: dict[str, str] = Field(default_factory=dict)

    @field_validator("routes")
    @classmethod
    def _route_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key, lp in value.items():
            group, colon, symbol = key.partition(":")
            if not colon or not group or not symbol or group == symbol == "*":
                raise ValueError(f"route {key!r}: GROUP:SYMBOL, GROUP:* or *:SYMBOL")
            if re.fullmatch(LP_NAME_PATTERN, lp) is None:
                raise ValueError(f"route {key!r}: {lp!r} is not an LP name")
        return value

    @property
    def enabled(self) -> bool:
        """True when requests are routed to per-LP queues."""
        return self.default is not None or bool(self.routes)

    def lp_for(self, group: str, symbol: str) -> str | None:
        """The LP of a request for ``group`` / ``symbol`` (None: the shared queue)."""
        for key in (f"{group}:{symbol}", f"{group}:*", f"*:{symbol}"):
            found = self.routes.get(key)
            if found is not None:
                return found
        return self.default


class Settings(BaseSettings):
    """Every knob of execflow, validated at start."""

    model_config = SettingsConfigDict(
        env_prefix="EXECFLOW_",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    # -- backends -------------------------------------------------------------------
    broker_url: str = Field(
        "memory://",
        description="memory:// or amqp://user:pass@host/vhost; several nodes of one cluster "
        "as amqp://user:pass@h1:5672,h2:5672/vhost (the client fails over between them)",
    )
    state_url: str = Field(
        "memory://",
        description="memory://, redis://host:port/db or redis+cluster://h1:p1,h2:p2/",
    )
    database_url: str = Field(
        "sqlite+aiosqlite:///execflow.db",
        description="sqlite+aiosqlite:///file.db or postgresql+asyncpg://...",
    )
    redis_pool_size: int = Field(
        32, ge=1, le=10_000, description="Redis connections per process (per node on a cluster)"
    )
    redis_timeout_s: float = Field(
        5.0,
        gt=0,
        description="deadline of one Redis operation (a socket timeout on a cluster), per attempt",
    )
    amqp_heartbeat_s: int = Field(10, ge=1, le=600)
    db_pool_size: int = Field(5, ge=1, le=1000)

    # -- queues -----------------------------------------------------------------------
    queue_prefix: str = Field("execflow", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    queue_type: Literal["quorum", "classic"] = Field(
        "quorum",
        description="RabbitMQ queue type: quorum (replicated, the default) or classic (a "
        "deployment's existing classic queues; docs/running.md, migrating from classic)",
    )
    queue_delivery_limit: int = Field(
        20,
        ge=2,
        le=1000,
        description="quorum queues: deliveries of one message returned unsettled (crashed "
        "handler, lost connection) before the broker moves it to the DLQ; a backstop above "
        "the runner's own retries, which re-publish and do not count here",
    )
    prefetch: int = Field(64, ge=1, le=10_000)
    ack_delay_ms: float = Field(
        5.0,
        ge=0,
        le=1_000,
        description="RabbitMQ: how long a consumer holds its acks to send a run of them as "
        "one basic.ack multiple (0: each ack at once); an ack is held only after its "
        "message's effects are durable",
    )
    concurrency: int = Field(16, ge=1, le=10_000)
    shutdown_timeout_s: float = Field(10.0, gt=0)

    # -- retries and parking --------------------------------------------------------
    retry_max_attempts: int = Field(5, ge=1, le=100)
    retry_base_delay_s: float = Field(0.2, gt=0)
    retry_max_delay_s: float = Field(30.0, gt=0)
    retry_jitter: float = Field(0.2, ge=0, le=1)
    park_max_attempts: int = Field(8, ge=1, le=100)
    intake_max_attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="an intake action whose commit conflicts this many times in a row is "
        "refused `busy`",
    )
    intake_commit_answer_timeout_s: float = Field(
        60.0,
        gt=0,
        description="how long the intake waits for the state store to answer before a "
        "commit whose answer was lost is logged INTAKE:COMMIT_UNKNOWN",
    )

    # -- input limits and the report guard ---------------------------------------------
    max_message_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=64 * _MIB,
        description="an LP message larger than this is dead-lettered `oversize` unparsed",
    )
    price_band_pct: Decimal = Field(
        Decimal(5),
        ge=0,
        le=100,
        description="a fill price more than this % outside the quote's bid/ask is refused "
        "`price_out_of_band`; 0 turns the check off",
    )

    # -- LP gateway (DESIGN §10) ------------------------------------------------------------
    lps: dict[str, LpSession] = Field(
        default_factory=dict, description="FIX sessions by LP name: `execflow run lp-gateway`"
    )
    lp_routing: LpRouting = Field(
        default_factory=LpRouting, description="which LP each request goes to"
    )
    quote_max_age_s: float = Field(
        0.0,
        ge=0,
        description="a quote older than this is stale: margin checks and conversions on it "
        "are refused `stale_price`; 0 turns the check off",
    )

    # -- db writer ----------------------------------------------------------------------
    db_batch_size: int = Field(100, ge=1, le=10_000)
    db_batch_timeout_s: float = Field(0.05, gt=0)

    # -- logging --------------------------------------------------------------------------
    log_dir: Path = Field(Path("logs/provider"))
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"
    log_max_bytes: dict[str, int] = Field(
        default_factory=dict, description="per catalog file: name -> max bytes"
    )
    log_backups: dict[str, int] = Field(
        default_factory=dict, description="per catalog file: name -> backup count"
    )
    log_flush_interval_s: float = Field(0.2, gt=0, le=10)
    log_buffer_bytes: int = Field(256 * 1024, ge=4096, le=64 * _MIB)
    log_gzip: bool = False
    log_gzip_level: int = Field(6, ge=1, le=9)
    log_retention_days: float = Field(30.0, gt=0)
    log_max_total_bytes: int = Field(20 * 1024 * _MIB, gt=0)

    # -- statistics and metrics -------------------------------------------------------------
    stats_every_n: int = Field(100, ge=1)
    stats_interval_s: float = Field(300.0, gt=0)
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_multiproc_dir: Path | None = Field(
        None,
        description="set by `run all` for its children: record metrics for the supervisor's "
        "one aggregated endpoint instead of serving their own",
    )

    # -- stuck orders ----------------------------------------------------------------------
    stuck_after_s: float = Field(
        300.0,
        gt=0,
        description="an order waiting for the LP's answer with no activity for this long is "
        "stuck (listed by `execflow orders stuck`, counted in execflow_stuck_orders)",
    )
    stuck_check_interval_s: float = Field(
        60.0, gt=0, description="how often the dispatcher counts stuck orders for the metric"
    )
    queue_sample_interval_s: float = Field(
        15.0,
        gt=0,
        description="how often the dispatcher reads each queue's depth and consumers from "
        "the broker (execflow_queue_depth, execflow_queue_consumers)",
    )

    # -- platform API (execflow run api / serve) ------------------------------------------
    api_host: str = Field("127.0.0.1", description="TLS is left to a reverse proxy")
    api_port: int = Field(8080, ge=0, le=65535)
    api_max_body_bytes: int = Field(16 * 1024, ge=256, le=16 * _MIB)
    api_rate_per_s: float = Field(50.0, gt=0, description="sustained requests per API key")
    api_rate_burst: int = Field(100, ge=1, description="requests per API key in one burst")
    api_cors_origins: tuple[str, ...] = Field(
        (), description="origins allowed by CORS; empty: no CORS headers at all"
    )
    api_idempotency_ttl_s: float = Field(86_400.0, gt=0)
    api_idempotency_wait_s: float = Field(
        10.0, gt=0, description="how long a duplicate waits for the first call's answer"
    )
    api_key_cache_s: float = Field(
        5.0, ge=0, description="a verified key is re-read (revocation seen) after this"
    )
    api_stream_recheck_s: float = Field(
        15.0,
        gt=0,
        description="a live stream with no wake-up re-reads its accounts' events this often "
        "(a safety net for a lost event-feed announcement), and sends a keep-alive",
    )
    api_stream_max_accounts: int = Field(100, ge=1, le=10_000)

    # -- process ---------------------------------------------------------------------------------
    instance: int = Field(1, ge=1, le=10_000)
    seed_file: Path | None = None
    lp_half_spread_default: Decimal = Decimal("0")
    gc_thresholds: tuple[int, int, int] = Field(
        (10_000, 20, 100),
        description="the cyclic garbage collector's thresholds, set when the services open "
        "([700, 10, 10] are Python's own): fewer young collections mean fewer full ones, "
        "each an event-loop pause of tens of ms in a busy pipeline; a young collection's "
        "pause grows with the first (about 10 ms at 50,000, 2 ms at 10,000)",
    )

    @field_validator("log_max_bytes", "log_backups")
    @classmethod
    def _non_negative(cls, value: dict[str, int]) -> dict[str, int]:
        for name, number in value.items():
            if number < 0:
                raise ValueError(f"{name}: must be >= 0, got {number}")
        return value

    @field_validator("lps")
    @classmethod
    def _lp_names(cls, value: dict[str, LpSession]) -> dict[str, LpSession]:
        for name in value:
            if re.fullmatch(LP_NAME_PATTERN, name) is None:
                raise ValueError(f"LP name {name!r}: letters, digits and _, starting with a letter")
        return value

    @field_validator("gc_thresholds")
    @classmethod
    def _positive_thresholds(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(value) < 1:
            raise ValueError(f"each threshold must be >= 1, got {list(value)}")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if not value.startswith(("memory://", "amqp://", "amqps://")):
            raise ValueError("scheme must be memory://, amqp:// or amqps://")
        found = re.match(r"^[a-z]+://(?:[^@/?#]*@)?([^/?#]*)", value)
        hosts = found.group(1).split(",") if found is not None else []
        if len(hosts) > 1 and any(not host.strip() for host in hosts):
            raise ValueError("a comma-separated host list must not have an empty host")
        return value

    @field_validator("state_url")
    @classmethod
    def _state_scheme(cls, value: str) -> str:
        if not value.startswith(
            ("memory://", "redis://", "rediss://", "unix://", "redis+cluster://")
        ):
            raise ValueError(
                "scheme must be memory://, redis://, rediss://, unix:// or redis+cluster://"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("scheme must be sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then environment, then the TOML file (if any)."""
        toml_file = _CONFIG_FILE.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


# The TOML path is chosen per load_settings() call; pydantic-settings asks for sources
# through a classmethod, so the chosen path is handed over here for the call's duration.
_CONFIG_FILE: dict[str, Path | None] = {"path": None}


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once; an invalid value raises ``ConfigError`` naming the setting."""
    path = config_file
    if path is None and os.environ.get("EXECFLOW_CONFIG"):
        path = Path(os.environ["EXECFLOW_CONFIG"])
    if path is not None and not path.is_file():
        raise ConfigError(f"config file not found: {path}", setting="config")
    _CONFIG_FILE["path"] = path
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"]) or "settings"
            env = f"EXECFLOW_{str(err['loc'][0]).upper()}" if err["loc"] else "EXECFLOW_*"
            problems.append(f"{name} ({env}): {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems), setting=problems) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML: {exc}", setting="config"
        ) from None
    except SettingsError as exc:
        # a value that must be JSON (a mapping, a list) and is not: name the variable
        raise ConfigError(_unparsable(exc), setting="environment") from None
    finally:
        _CONFIG_FILE["path"] = None


_FIELD_IN_MESSAGE = re.compile(r'field "([^"]+)"')


def _unparsable(exc: SettingsError) -> str:
    """One sentence for a setting pydantic-settings could not decode (bad JSON)."""
    found = _FIELD_IN_MESSAGE.search(str(exc))
    name = found.group(1) if found else "a setting"
    cause = exc.__cause__ or exc.__context__
    why = f": {type(cause).__name__}: {cause}" if cause is not None else ""
    return f"{name} (EXECFLOW_{name.upper()}) is not valid JSON{why}"


def require_services() -> bool:
    """True when integration tests must fail rather than skip without a server."""
    return os.environ.get("EXECFLOW_REQUIRE_SERVICES", "") in {"1", "true", "yes"}


def environment_with(**extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``: what a supervised child inherits."""
    return {**os.environ, **extra}


def prometheus_multiproc_dir() -> Path | None:
    """``PROMETHEUS_MULTIPROC_DIR`` of this process's environment, if set.

    prometheus_client reads it (itself) when it creates each value file in multiprocess
    mode, and has no other way to be told: so it is never written by execflow, but set in
    the environment of the processes ``run all`` spawns, next to
    ``EXECFLOW_METRICS_MULTIPROC_DIR`` (``metrics_multiproc_dir``). Read here, the one
    environment reader, so ``Metrics`` can check the two agree.
    """
    value = os.environ.get(PROMETHEUS_MULTIPROC_DIR)
    return Path(value) if value else None
