"""Settings from the environment (pydantic-settings): one clear line for each missing or malformed one."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_TEAMS_SERVICE_URL = "https://smba.trafficmanager.net/teams/"
GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


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
    # how often the scheduler asks what is due, and how fast it may post to one Slack workspace (unset:
    # as fast as Slack answers, every sender thread pausing for a 429's Retry-After).
    retainer_rhythm_hour: int = Field(9, ge=0, le=23)
    retainer_rhythm_grace_hours: float = Field(12.0, ge=0)
    retainer_reminder_after_business_days: int = Field(2, ge=0)
    retainer_scheduler_interval: float = Field(60.0, gt=0)
    retainer_posts_per_second: float | None = Field(None, gt=0)
    # Each conversation's pace: Slack's documented 1 chat.postMessage a second (bursts of 3).
    retainer_conversation_posts_per_second: float = Field(1.0, gt=0)
    # Worker processes answering the portfolio views (`list`, `list all`), so that they never hold up
    # anyone's `status` (bot/view_workers.py); unset: one core fewer than the machine has, one or two;
    # 0: on threads of the bot process.
    retainer_view_processes: int | None = Field(None, ge=0, le=32)
    # Store the standings a write made stale right after it commits (bot/keeper.py), not only at the tick.
    retainer_keep_standings: bool = True
    # Microsoft Teams through Bot Framework. Without an app id, /api/messages takes unauthenticated
    # requests (local development against a Bot Connector stand-in) and says so at start-up.
    microsoft_app_id: str | None = None
    microsoft_app_password: str | None = None
    microsoft_app_tenant_id: str | None = None  # the bot's own tenant (single-tenant registrations)
    microsoft_app_type: str | None = None  # MultiTenant or SingleTenant; default: by the tenant id
    teams_tenant_id: str | None = None  # the agency's Microsoft 365 tenant: who is internal
    teams_service_url: str = DEFAULT_TEAMS_SERVICE_URL  # for 1:1 chats nobody has started yet
    # Charts on Slack: its native chart blocks where they can show the chart, else uploaded PNGs;
    # "png" uploads them all (a workspace that prefers images).
    retainer_slack_charts: Literal["native", "png"] = "native"
    # The CRM hand-off (handlers/crm.py): each endpoint exists only with its secret. The mapping file
    # names the templates a deal may ask for and which HubSpot deal properties carry what.
    retainer_crm_secret: str | None = Field(None, min_length=16)
    retainer_hubspot_client_secret: str | None = Field(None, min_length=8)
    retainer_crm_mapping: str | None = None
    retainer_public_url: str | None = None  # https://host as HubSpot calls it (behind a proxy)

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

    @field_validator("microsoft_app_id", "microsoft_app_tenant_id", "teams_tenant_id")
    @classmethod
    def _guid(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not GUID.match(value):
            name = str(info.field_name).upper()
            raise ValueError(f"{name} must be a GUID like 00000000-0000-0000-0000-000000000000")
        return value

    @field_validator("microsoft_app_type")
    @classmethod
    def _app_type(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in ("multitenant", "singletenant"):
            raise ValueError(f"MICROSOFT_APP_TYPE must be MultiTenant or SingleTenant, not “{value}”")
        return value

    @field_validator("teams_service_url")
    @classmethod
    def _service_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError(f"TEAMS_SERVICE_URL must be an http(s) URL, not “{value}”")
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _teams(self) -> Settings:
        if self.microsoft_app_id and not self.microsoft_app_password:
            raise ValueError("MICROSOFT_APP_PASSWORD is required with MICROSOFT_APP_ID")
        if self.microsoft_app_password and not self.microsoft_app_id:
            raise ValueError("MICROSOFT_APP_PASSWORD needs MICROSOFT_APP_ID too")
        if self.teams_app_type == "SingleTenant" and not self.microsoft_app_tenant_id:
            raise ValueError("MICROSOFT_APP_TENANT_ID is required for a SingleTenant bot")
        return self

    @property
    def teams_app_type(self) -> str:
        if self.microsoft_app_type:
            return "SingleTenant" if self.microsoft_app_type.lower() == "singletenant" else "MultiTenant"
        return "SingleTenant" if self.microsoft_app_tenant_id else "MultiTenant"

    @property
    def teams_authenticated(self) -> bool:
        """Bot Framework tokens are checked on /api/messages (an app id is configured)."""
        return self.microsoft_app_id is not None

    @property
    def agency_tenant(self) -> str | None:
        """The agency's own Microsoft 365 tenant: Teams users from anywhere else are external."""
        return self.teams_tenant_id or self.microsoft_app_tenant_id

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
