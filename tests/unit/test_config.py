"""`app.core.config`: the settings of section 6 of the contract, and refusing to start."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.config import ConfigurationError, Environment, Settings, to_async_url
from app.main import create_app
from tests.conftest import make_settings

CONFIG_VARIABLES = (
    "DATABASE_URL",
    "SECRET_KEY",
    "ENVIRONMENT",
    "ACCESS_TOKEN_EXPIRE_MINUTES",
    "REFRESH_TOKEN_EXPIRE_DAYS",
    "BCRYPT_ROUNDS",
    "REDIS_URL",
    "RATE_LIMIT_ENABLED",
    "RATE_LIMIT_ANONYMOUS_IP",
    "METRICS_TOKEN",
    "CORS_ORIGINS",
    "DATA_DIR",
    "JOBS_IN_API",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No configuration from the test process's environment (conftest sets some)."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def settings_from_env(**values: Any) -> Settings:
    """Settings as the service reads them: environment only, no `.env` file."""
    return Settings(_env_file=None, **values)


class TestDefaults:
    def test_contract_defaults(self, tmp_path: Path) -> None:
        settings = settings_from_env(data_dir=tmp_path)
        assert settings.environment is Environment.DEVELOPMENT
        assert settings.access_token_expire_minutes == 15
        assert settings.refresh_token_expire_days == 30
        assert settings.bcrypt_rounds == 12
        assert settings.redis_url is None
        assert settings.rate_limit_enabled is True
        assert settings.cors_origins == []
        assert settings.max_body_bytes == 1024 * 1024
        assert settings.rate_limit_anonymous_ip == "60/minute"
        assert settings.metrics_token is None  # /metrics open unless a token is set

    @pytest.mark.parametrize("environment", ["development", "test", "production"])
    def test_on_sqlite_the_api_runs_the_jobs_in_every_environment(
        self, clean_env: pytest.MonkeyPatch, tmp_path: Path, environment: str
    ) -> None:
        """Spec api-v2 section 10: on SQLite a bare `uvicorn app.main:app` needs nothing
        more. With ENVIRONMENT=test it ran none (a black-box run: no reminder, no
        notification), which only the test suite wanted; it now says so itself."""
        clean_env.setenv("ENVIRONMENT", environment)
        clean_env.setenv("SECRET_KEY", "explicit-key-" + "e" * 32)
        sqlite = settings_from_env(data_dir=tmp_path)
        assert sqlite.runs_jobs_in_api
        postgresql = settings_from_env(data_dir=tmp_path, database_url="postgresql://db/tasks")
        assert not postgresql.runs_jobs_in_api
        clean_env.setenv("JOBS_IN_API", "false")
        assert not settings_from_env(data_dir=tmp_path).runs_jobs_in_api

    def test_default_database_is_sqlite_in_data_dir(self, tmp_path: Path) -> None:
        url = settings_from_env(data_dir=tmp_path).sqlalchemy_url
        assert url.drivername == "sqlite+aiosqlite"
        assert url.database == str(tmp_path / "tasks.db")

    def test_read_from_environment(self, clean_env: pytest.MonkeyPatch) -> None:
        clean_env.setenv("ENVIRONMENT", "production")
        clean_env.setenv("SECRET_KEY", "k" * 48)
        clean_env.setenv("ACCESS_TOKEN_EXPIRE_MINUTES", "5")
        clean_env.setenv("REFRESH_TOKEN_EXPIRE_DAYS", "7")
        clean_env.setenv("BCRYPT_ROUNDS", "10")
        clean_env.setenv("RATE_LIMIT_ENABLED", "false")
        clean_env.setenv("REDIS_URL", "")
        settings = settings_from_env()
        assert settings.is_production
        assert settings.signing_key == "k" * 48
        assert settings.access_token_expire_minutes == 5
        assert settings.refresh_token_expire_days == 7
        assert settings.bcrypt_rounds == 10
        assert settings.rate_limit_enabled is False
        assert settings.redis_url is None

    @pytest.mark.parametrize("value", ["staging", ""])
    def test_unknown_environment_rejected(self, clean_env: pytest.MonkeyPatch, value: str) -> None:
        clean_env.setenv("ENVIRONMENT", value)
        with pytest.raises(ValueError, match="environment"):
            settings_from_env()

    @pytest.mark.parametrize("rounds", ["3", "32", "twelve"])
    def test_bcrypt_rounds_bounded(self, clean_env: pytest.MonkeyPatch, rounds: str) -> None:
        clean_env.setenv("BCRYPT_ROUNDS", rounds)
        with pytest.raises(ValueError, match="bcrypt_rounds"):
            settings_from_env()

    @pytest.mark.parametrize(
        "variable",
        [
            "TRASH_RETENTION_DAYS",
            "ACTIVITY_RETENTION_DAYS",
            "INVITATION_EXPIRE_DAYS",
            "WEBHOOK_DISABLE_AFTER_DAYS",
        ],
    )
    def test_a_period_in_days_may_be_zero_but_not_negative(
        self, clean_env: pytest.MonkeyPatch, variable: str
    ) -> None:
        clean_env.setenv(variable, "0")
        assert getattr(settings_from_env(), variable.lower()) == 0
        clean_env.setenv(variable, "-1")
        with pytest.raises(ValueError, match=variable.lower()):
            settings_from_env()


class TestSecretKey:
    def test_production_without_key_raises(self, clean_env: pytest.MonkeyPatch) -> None:
        clean_env.setenv("ENVIRONMENT", "production")
        settings = settings_from_env()
        with pytest.raises(ConfigurationError, match="SECRET_KEY"):
            _ = settings.signing_key

    @pytest.mark.parametrize("placeholder", ["changethis", "changeme", "SECRET", " change-me "])
    def test_production_placeholder_key_raises(self, placeholder: str) -> None:
        settings = make_settings(
            "sqlite:///unused.db", environment="production", secret_key=placeholder
        )
        with pytest.raises(ConfigurationError, match="SECRET_KEY"):
            _ = settings.signing_key

    def test_production_with_key(self, clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
        clean_env.setenv("ENVIRONMENT", "production")
        clean_env.setenv("SECRET_KEY", "a-real-random-production-key-" + "z" * 20)
        settings = settings_from_env(data_dir=tmp_path)
        assert settings.signing_key == "a-real-random-production-key-" + "z" * 20
        assert list(tmp_path.iterdir()) == []

    def test_create_app_exits_non_zero_with_message(
        self, clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        clean_env.setenv("ENVIRONMENT", "production")
        settings = settings_from_env(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/x.db")
        with pytest.raises(SystemExit) as exited:
            create_app(settings)
        assert exited.value.code not in (0, None)
        err = capsys.readouterr().err
        assert "SECRET_KEY" in err
        assert "Traceback" not in err

    def test_development_key_created_once_and_reused(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "data"
        key = settings_from_env(data_dir=data_dir).signing_key
        key_file = data_dir / "secret_key"
        assert key_file.is_file()
        assert key_file.read_text().strip() == key
        assert len(key) >= 32
        assert stat.S_IMODE(key_file.stat().st_mode) & 0o077 == 0  # not readable by others
        before = key_file.stat().st_mtime_ns
        assert settings_from_env(data_dir=data_dir).signing_key == key
        assert key_file.stat().st_mtime_ns == before

    def test_development_uses_an_existing_key_file(self, tmp_path: Path) -> None:
        (tmp_path / "secret_key").write_text("an-existing-development-key-0123456789\n")
        settings = settings_from_env(data_dir=tmp_path)
        assert settings.signing_key == "an-existing-development-key-0123456789"

    def test_explicit_key_wins_in_development(
        self, clean_env: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        clean_env.setenv("SECRET_KEY", "explicit-key-" + "e" * 32)
        assert settings_from_env(data_dir=tmp_path).signing_key == "explicit-key-" + "e" * 32
        assert not (tmp_path / "secret_key").exists()

    def test_test_environment_writes_no_file(
        self, clean_env: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        clean_env.setenv("ENVIRONMENT", "test")
        settings = settings_from_env(data_dir=tmp_path)
        assert len(settings.signing_key) >= 32
        assert settings.signing_key == settings.signing_key  # stable for one settings object
        assert list(tmp_path.iterdir()) == []


class TestDatabaseUrl:
    @pytest.mark.parametrize(
        ("raw", "driver", "database"),
        [
            ("postgresql://u:p@db.example:5433/tasks", "postgresql+asyncpg", "tasks"),
            ("postgres://u:p@db.example:5433/tasks", "postgresql+asyncpg", "tasks"),
            ("postgresql+psycopg2://u:p@db.example:5433/tasks", "postgresql+asyncpg", "tasks"),
            ("postgresql+asyncpg://u:p@db.example:5433/tasks", "postgresql+asyncpg", "tasks"),
            ("sqlite:///x", "sqlite+aiosqlite", "x"),
            ("sqlite:////tmp/abs/tasks.db", "sqlite+aiosqlite", "/tmp/abs/tasks.db"),
            ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite", "x.db"),
        ],
    )
    def test_mapped_to_async_driver(self, raw: str, driver: str, database: str) -> None:
        url = make_settings(raw).sqlalchemy_url
        assert url.drivername == driver
        assert url.database == database
        assert to_async_url(raw) == url

    def test_credentials_and_host_kept(self) -> None:
        url = to_async_url("postgresql://tasks:s3cr%40t@db.example:5433/tasks")
        assert (url.username, url.password, url.host, url.port) == (
            "tasks",
            "s3cr@t",
            "db.example",
            5433,
        )

    def test_from_environment(self, clean_env: pytest.MonkeyPatch) -> None:
        clean_env.setenv("DATABASE_URL", "postgres://u@127.0.0.1/db")
        assert settings_from_env().sqlalchemy_url.drivername == "postgresql+asyncpg"

    @pytest.mark.parametrize("raw", ["mysql://u@h/db", "oracle://u@h/db"])
    def test_other_databases_refused(self, raw: str) -> None:
        with pytest.raises(ConfigurationError, match="DATABASE_URL"):
            _ = make_settings(raw).sqlalchemy_url


class TestCorsOrigins:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("https://a.example", ["https://a.example"]),
            ("https://a.example,https://b.example", ["https://a.example", "https://b.example"]),
            (
                " https://a.example , https://b.example ,",
                ["https://a.example", "https://b.example"],
            ),
            ("", []),
        ],
    )
    def test_comma_separated(
        self, clean_env: pytest.MonkeyPatch, raw: str, expected: list[str]
    ) -> None:
        clean_env.setenv("CORS_ORIGINS", raw)
        assert settings_from_env().cors_origins == expected

    async def test_app_allows_only_listed_origins(self, tmp_path: Path) -> None:
        settings = make_settings(
            f"sqlite:///{tmp_path}/cors.db", cors_origins="https://app.example"
        )
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        preflight = {"Access-Control-Request-Method": "POST"}
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            allowed = await http.options(
                "/api/v1/tasks", headers={"Origin": "https://app.example", **preflight}
            )
            refused = await http.options(
                "/api/v1/tasks", headers={"Origin": "https://evil.example", **preflight}
            )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "access-control-allow-origin" not in refused.headers


class TestMetricsToken:
    def test_read_from_the_environment_and_never_shown(self, clean_env: pytest.MonkeyPatch) -> None:
        token = "a-metrics-token-" + "m" * 24
        clean_env.setenv("METRICS_TOKEN", token)
        settings = settings_from_env()
        assert settings.metrics_token is not None
        assert settings.metrics_token.get_secret_value() == token
        assert token not in repr(settings)
        assert token not in str(settings.model_dump())

    def test_empty_is_unset(self, clean_env: pytest.MonkeyPatch) -> None:
        clean_env.setenv("METRICS_TOKEN", "")
        assert settings_from_env().metrics_token is None

    @pytest.mark.parametrize("token", ["short-token", "s3cr3t"])
    def test_a_short_token_is_refused_without_repeating_it(
        self, clean_env: pytest.MonkeyPatch, token: str
    ) -> None:
        clean_env.setenv("METRICS_TOKEN", token)
        with pytest.raises(ValueError, match="metrics_token") as refused:
            settings_from_env()
        assert token not in str(refused.value)

    def test_a_refused_secret_is_not_repeated_in_the_error(
        self, clean_env: pytest.MonkeyPatch
    ) -> None:
        # Any refused setting: the error (printed when the service fails to start) says
        # which one, never the value, which may be a secret.
        clean_env.setenv("BCRYPT_ROUNDS", "hunter2-not-a-number")
        with pytest.raises(ValueError, match="bcrypt_rounds") as refused:
            settings_from_env()
        assert "hunter2" not in str(refused.value)
