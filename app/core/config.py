"""The one settings object: every configuration name of the contract (section 6) lives here."""

from __future__ import annotations

import enum
import ipaddress
import os
import secrets
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated

from limits import parse as parse_limit
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Placeholders that people copy from examples; a production key must not be one of them.
# Seconds before each retry of a failed webhook delivery (spec api-v2 section 9: about three
# days in all; jitter is added per attempt).
DEFAULT_WEBHOOK_RETRY_SCHEDULE = (
    5,
    300,
    1800,
    7200,
    18000,
    36000,
    36000,
    36000,
    36000,
    36000,
    36000,
)

_PLACEHOLDER_SECRETS = frozenset({"changethis", "change-me", "changeme", "secret", "secret-key"})


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ConfigurationError(RuntimeError):
    """The configuration cannot run the service; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # A refused value is never repeated in the error (nor in the log of a failed start):
        # several settings are secrets (SECRET_KEY, METRICS_TOKEN, passwords in URLs).
        hide_input_in_errors=True,
    )

    environment: Environment = Environment.DEVELOPMENT
    data_dir: Path = PROJECT_ROOT / "data"
    database_url: str = ""
    secret_key: str = ""
    access_token_expire_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_expire_days: int = Field(default=30, ge=1, le=365)
    # A refresh token unused this long expires even within the absolute lifetime.
    refresh_token_idle_days: int = Field(default=7, ge=1, le=365)
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)
    redis_url: str | None = None
    rate_limit_enabled: bool = True
    # Limits in the `limits` package's notation ("5/minute", "10 per hour").
    rate_limit_login_account: str = "5/minute"
    rate_limit_login_ip: str = "20/minute"
    rate_limit_register_ip: str = "10/hour"
    rate_limit_user: str = "600/minute"
    # Requests that carry no valid credential, per client address: token refresh, logout,
    # and requests to authenticated routes without a valid access token.
    rate_limit_anonymous_ip: str = "60/minute"
    # Namespace of the counters in Redis (several deployments may share one server).
    rate_limit_key_prefix: str = Field(default="tasks-api-rl", min_length=1, max_length=64)
    # Peers whose X-Forwarded-For is believed (IPs or CIDR blocks, comma-separated).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"
    # When set, GET /metrics answers only `Authorization: Bearer <this token>`.
    metrics_token: SecretStr | None = Field(default=None, min_length=16, max_length=512)
    # Pool sizing for PostgreSQL; SQLite ignores it.
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # DATABASE_URL names a pooler in transaction mode (PgBouncer), not the server: a session
    # lasts one transaction, so nothing may outlive one (decision 0034).
    db_transaction_pooling: bool = False
    # Request bodies over this many bytes are a 413 (counted as they arrive).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Periods in days may be 0, "at once" (decision 0040): a careful operator may want no
    # history kept, and a test run wants to see the sweeps work without waiting days.
    # Trash retention used by the cleanup job and `python -m app.cli purge-trash`.
    trash_retention_days: int = Field(default=30, ge=0)
    # v2 (spec api-v2 section 11): how long events are kept (`python -m app.cli
    # expire-events`); a feed cursor from before what was removed is a 410.
    activity_retention_days: int = Field(default=90, ge=0)
    # v2 (spec api-v2 section 11): how long an invitation can be accepted.
    invitation_expire_days: int = Field(default=7, ge=0, le=365)
    # Retiring v1 (spec api-v2 section 1): RFC 3339 instants, unset by default. From the
    # deprecation on, v1 responses say so; from the sunset on, v1 answers 410.
    api_v1_deprecated_at: datetime | None = None
    api_v1_sunset_at: datetime | None = None
    # Mail (spec api-v2 section 11): each notification is mailed when SMTP_URL is set
    # (`smtp://user:pass@host:port`, `smtps://...`); PUBLIC_URL makes the links in it.
    smtp_url: SecretStr | None = None
    mail_from: str = "tasks@localhost"
    public_url: str | None = None
    # Webhooks (spec api-v2 section 9).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_disable_after_days: int = Field(default=5, ge=0)
    # CIDRs a webhook may reach although they are not global addresses (default: none).
    webhook_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Seconds before each retry of a failed delivery, comma-separated; then it is abandoned.
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [float(delay) for delay in DEFAULT_WEBHOOK_RETRY_SCHEDULE]
    )
    # Background work (spec api-v2 section 10). On SQLite the API process runs the jobs
    # itself; on PostgreSQL `python -m app.cli worker` does, unless this says otherwise.
    jobs_in_api: bool | None = None

    @field_validator(
        "cors_origins",
        "trusted_proxies",
        "webhook_allowed_networks",
        "webhook_retry_schedule",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _valid_schedule(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 <= delay <= 7 * 24 * 3600 for delay in value):
            raise ValueError("must be one or more delays in seconds, each 0 to 604800")
        return value

    @field_validator(
        "rate_limit_login_account",
        "rate_limit_login_ip",
        "rate_limit_register_ip",
        "rate_limit_user",
        "rate_limit_anonymous_ip",
    )
    @classmethod
    def _valid_limit(cls, value: str) -> str:
        try:
            limit = parse_limit(value)
        except ValueError:
            raise ValueError("must be a rate limit such as '5/minute'") from None
        if limit.amount < 1:
            raise ValueError("must allow at least one request; use RATE_LIMIT_ENABLED=false")
        return value

    @field_validator("trusted_proxies", "webhook_allowed_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @field_validator("api_v1_deprecated_at", "api_v1_sunset_at")
    @classmethod
    def _aware_instant(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must be an RFC 3339 timestamp with a time zone offset")
        return value

    @model_validator(mode="after")
    def _sunset_after_deprecation(self) -> Settings:
        sunset, deprecated = self.api_v1_sunset_at, self.api_v1_deprecated_at
        if sunset is not None and (deprecated is None or sunset < deprecated):
            raise ValueError(
                "API_V1_SUNSET_AT needs API_V1_DEPRECATED_AT, and must not be earlier than it"
            )
        return self

    @field_validator(
        "redis_url",
        "metrics_token",
        "api_v1_deprecated_at",
        "api_v1_sunset_at",
        "smtp_url",
        "public_url",
        "jobs_in_api",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def runs_jobs_in_api(self) -> bool:
        """Whether the API process runs the background jobs itself (SQLite: yes, by default,
        in every environment; PostgreSQL: workers do). The test suite sets `JOBS_IN_API=false`
        and runs the jobs itself, when and where it chooses."""
        if self.jobs_in_api is not None:
            return self.jobs_in_api
        return self.sqlalchemy_url.get_backend_name() == "sqlite"

    @cached_property
    def sqlalchemy_url(self) -> URL:
        """The async SQLAlchemy URL for `database_url`, whatever form it was given in."""
        return to_async_url(self.database_url or f"sqlite:///{self.data_dir / 'tasks.db'}")

    @cached_property
    def signing_key(self) -> str:
        """The key that signs access tokens (and, derived, cursors).

        In production it must be given; in development one is created once in the data
        folder so that tokens survive a restart; tests get a fresh one per process.
        """
        if self.secret_key:
            if self.is_production and self.secret_key.strip().lower() in _PLACEHOLDER_SECRETS:
                raise ConfigurationError(
                    "SECRET_KEY is a placeholder value; set a random key of at least 32 bytes, "
                    'e.g. python -c "import secrets; print(secrets.token_urlsafe(48))"'
                )
            return self.secret_key
        if self.is_production:
            raise ConfigurationError(
                "SECRET_KEY is not set. The service refuses to start in production without it; "
                'set it to a random value, e.g. python -c "import secrets; '
                'print(secrets.token_urlsafe(48))"'
            )
        if self.environment is Environment.TEST:
            return secrets.token_urlsafe(48)
        return _read_or_create_dev_secret(self.data_dir / "secret_key")


def _read_or_create_dev_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Written aside, then linked into place: two processes starting at once never see a
        # half-written key, and the first link wins (os.link fails if the name exists).
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        draft.write_text(secrets.token_urlsafe(48), encoding="utf-8")
        draft.chmod(0o600)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink(missing_ok=True)
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise ConfigurationError(f"{path} is empty; delete it to have a new key generated")
    return key


# The service runs on asyncpg and aiosqlite only; URLs naming another driver of the same
# database (sync or not installed) are served by those.
_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+pg8000": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
}


def to_async_url(raw: str) -> URL:
    """Accept plain `postgresql://` and `sqlite:///` URLs and pick the async driver."""
    url = make_url(raw)
    driver = _ASYNC_DRIVERS.get(url.drivername)
    if driver is not None:
        url = url.set(drivername=driver)
    if url.get_backend_name() not in {"postgresql", "sqlite"}:
        raise ConfigurationError("DATABASE_URL must name a PostgreSQL or SQLite database")
    return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
