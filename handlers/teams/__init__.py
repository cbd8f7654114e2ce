"""Microsoft Teams through Bot Framework: the CloudAdapter (every request's token checked once an app id
is configured), the bot, its Messenger, and the handler for POST /api/messages."""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass

import requests
from aiohttp import web
from botbuilder.core import TurnContext, serializer_helper
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ActivityTypes
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.config import Settings
from bot.core import Core
from bot.messenger import Messenger
from bot.view_workers import ViewWorkers
from handlers.teams.bot import Directory, RetainerBot
from handlers.teams.messenger import TeamsMessenger, card_activity
from handlers.teams.references import References
from handlers.teams.trust import ServiceUrls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BotConfiguration:
    """The settings ConfigurationBotFrameworkAuthentication reads, by the names it reads them."""

    APP_ID: str | None
    APP_PASSWORD: str | None
    APP_TYPE: str
    APP_TENANTID: str | None


@dataclass
class Teams:
    adapter: CloudAdapter
    bot: RetainerBot
    messenger: TeamsMessenger
    references: References
    authenticated: bool
    service_urls: ServiceUrls

    async def handle(self, request: web.Request) -> web.Response:
        """POST /api/messages. The token is checked first (any failure to validate it is a 401, never
        a 500); then the activity goes through the adapter and an invoke's answer is the response.
        CloudAdapter.process is not used: it serializes an invoke's answer a second time and fails."""
        if "application/json" not in request.headers.get("Content-Type", ""):
            return web.json_response({"error": "expected application/json"}, status=415)
        try:
            body = await request.json()
            activity = Activity().deserialize(body)
        except Exception:
            return web.json_response({"error": "not an Activity"}, status=400)
        if not activity.type:
            return web.json_response({"error": "not an Activity"}, status=400)
        header = request.headers.get("Authorization", "")
        try:
            authentication = await self.adapter.bot_framework_authentication.authenticate_request(
                activity, header
            )
        except requests.RequestException as err:  # Bot Framework's signing keys are out of reach
            log.error("could not check a Teams token: %s", err)
            return web.json_response({"error": "cannot check the token now"}, status=503)
        except Exception as err:
            log.warning("rejected a request to /api/messages: %s", err or type(err).__name__)
            return web.json_response({"error": "unauthorized"}, status=401)
        refusal = self.service_urls.refusal(
            body.get("serviceUrl") if isinstance(body, dict) else None,
            authentication.claims_identity.claims if authentication.claims_identity else None,
        )
        if refusal is not None:
            log.warning("rejected a request to /api/messages: %s", refusal)
            return web.json_response({"error": "unauthorized"}, status=401)
        answer = await self.adapter.process_activity(authentication, activity, self.bot.on_turn)
        if answer is None:
            return web.Response(status=201)
        if answer.body is None:
            return web.Response(status=answer.status)
        data = answer.body if isinstance(answer.body, dict | list | str) else serializer_helper(answer.body)
        return web.json_response(data, status=answer.status)

    def close(self) -> None:
        self.messenger.close()


def build_teams(
    settings: Settings,
    core: Core,
    sessions: sessionmaker[Session],
    clock: Clock,
    executor: Executor,
    messenger: Messenger,
    views: ViewWorkers,
) -> Teams:
    """The Teams side of the bot. `messenger` routes the core's posts to whichever platform their
    conversation lives on (the Teams Messenger built here is one of its platforms)."""
    configuration = BotConfiguration(
        APP_ID=settings.microsoft_app_id,
        APP_PASSWORD=settings.microsoft_app_password,
        APP_TYPE=settings.teams_app_type,
        APP_TENANTID=settings.microsoft_app_tenant_id,
    )
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(configuration))
    references = References(sessions, clock)
    teams_messenger = TeamsMessenger(
        adapter,
        references,
        app_id=settings.microsoft_app_id,
        agency_tenant=settings.agency_tenant,
        service_url=settings.teams_service_url,
        timeout=settings.retainer_http_timeout,
    )
    service_urls = ServiceUrls(settings.teams_service_url, settings.teams_authenticated)
    bot = RetainerBot(
        core,
        references,
        Directory(settings.agency_tenant, references),
        teams_messenger,
        messenger,
        executor,
        views,
        service_urls,
        http_timeout=settings.retainer_http_timeout,
    )

    async def on_turn_error(turn_context: TurnContext, err: Exception) -> None:
        reply = core.unexpected("teams turn", activity=turn_context.activity.type)
        log.debug("turn error: %r", err)
        if turn_context.activity.type == ActivityTypes.message:
            try:
                await turn_context.send_activity(card_activity(reply))
            except Exception as failed:
                log.warning("could not tell the user about the error: %s", failed)

    adapter.on_turn_error = on_turn_error
    return Teams(adapter, bot, teams_messenger, references, settings.teams_authenticated, service_urls)


def describe(teams: Teams) -> str:
    if teams.authenticated:
        return "Teams on /api/messages: Bot Framework tokens are checked"
    return (
        "Teams on /api/messages: no MICROSOFT_APP_ID set, so requests are NOT authenticated "
        "(local development only; set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD before exposing it)"
    )
