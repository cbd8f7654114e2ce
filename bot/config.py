"""Settings from the environment (pydantic-settings): one clear line for each missing or malformed one."""

from __future__ import annotations

import re

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_SLACK_API_URL = "https://slack.com/api/"


class SettingsError(Exception):
    """Settings that cannot start the bot; `lines` holds one sentence per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_file=".env", env_file_encoding="utf-8")

    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    database_url: str = "sqlite:///retainer.db"
    retainer_http_timeout: float = 10.0
    # The monthly rhythm (SPEC §5.4): the local hour scheduled posts go out (a retainer may set its
    # own), how late a missed post is still worth sending, when a pending approval earns a reminder,
    # how often the scheduler asks what is due, and how fast it may post to one Slack workspace.
    retainer_rhythm_hour: int = Field(9, ge=0, le=23)
    retainer_rhythm_grace_hours: float = Field(12.0, ge=0)
    retainer_reminder_after_business_days: int = Field(2, ge=0)
    retainer_scheduler_interval: float = Field(60.0, gt=0)
    retainer_posts_per_second: float = Field(20.0, gt=0)

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("xoxb-"):
            raise ValueError("SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("xapp-"):
            raise ValueError(
                "SLACK_APP_TOKEN must be an app-level token starting with xapp- (for Socket Mode)"
            )
        return value

    @field_validator("slack_signing_secret")
    @classmethod
    def _signing_secret(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{16,128}", value):
            raise ValueError(
                "SLACK_SIGNING_SECRET must be the app's signing secret (hexadecimal, from Basic Information)"
            )
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError(
                f"SLACK_API_URL must be an http(s) URL like {DEFAULT_SLACK_API_URL}, not “{value}”"
            )
        return value if value.endswith("/") else value + "/"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError:
            raise ValueError(
                f"DATABASE_URL “{value}” is not a database URL (e.g. sqlite:///retainer.db)"
            ) from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"DATABASE_URL must be a sqlite:// or postgresql:// URL, not {backend}")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> Settings:
        if self.slack_bot_token and not self.slack_signing_secret and not self.slack_app_token:
            raise ValueError(
                "SLACK_SIGNING_SECRET is required with SLACK_BOT_TOKEN (or SLACK_APP_TOKEN for Socket Mode)"
            )
        if self.slack_app_token and not self.slack_bot_token:
            raise ValueError("SLACK_APP_TOKEN needs SLACK_BOT_TOKEN too")
        return self

    @property
    def demo(self) -> bool:
        """No Slack credentials: run on the built-in local Slack-compatible server."""
        return self.slack_bot_token is None


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and a .env file); SettingsError lists every problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        lines = []
        for problem in err.errors():
            message = str(problem["msg"]).removeprefix("Value error, ")
            name = ".".join(map(str, problem["loc"])).upper()
            if problem["type"] == "missing":
                message = f"{name} is required"
            elif problem["type"] != "value_error" and name:  # pydantic's own words lack the name
                message = f"{name}: {message}"
            lines.append(message)
        raise SettingsError(lines) from None
