"""The App Home tab: the dashboard (bot/dashboard.py), published when someone opens it or pages through
it. Both are lazy listeners, acked at once: a director's home covers every account. The scheduler's tick
publishes it again when what it shows has changed (`SlackHomes` is how it reaches Slack)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot.core import Core
from bot.dashboard import HOME_PAGE_ACTION
from bot.messenger import DeliveryError
from bot.replies import Reply
from handlers.slack.envelope import record_id
from handlers.slack.messenger import SlackMessenger
from handlers.slack.render import render_home
from handlers.slack.workspace import Workspace

log = logging.getLogger(__name__)


class SlackHomes(SlackMessenger):
    """Publishes home tabs through views.publish, Slack's errors sorted like any other post's."""

    def publish_home(self, user_id: str, reply: Reply) -> None:
        self._call(self.client.views_publish, user_id=user_id, view=render_home(reply))


def register(app: App, core: Core, workspace: Workspace) -> None:
    homes = SlackHomes(workspace.client)

    def ack_at_once(ack: Ack) -> None:
        ack()

    def opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return  # the Messages tab: nothing to publish
        user = event["user"]
        try:
            viewer = core.people.identify("slack", user, workspace.profile)
            core.dashboard.show(homes, viewer)
        except DeliveryError as err:  # Slack refused the view: nothing of ours went wrong
            log.warning("home tab of %s not published: %s", user, err.reason)
        except Exception:
            core.unexpected("home tab", user=user)

    def page(body: dict[str, Any]) -> None:
        user = body["user"]["id"]
        page_number = record_id(body["actions"][0].get("value")) or 0
        try:
            viewer = core.people.identify("slack", user, workspace.profile)
            core.dashboard.show(homes, viewer, page_number)
        except DeliveryError as err:
            log.warning("home tab page of %s not published: %s", user, err.reason)
        except Exception:
            core.unexpected("home tab page", user=user)

    app.event("app_home_opened")(ack=ack_at_once, lazy=[opened])
    app.action(HOME_PAGE_ACTION)(ack=ack_at_once, lazy=[page])
