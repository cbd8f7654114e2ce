"""The dashboard on Teams (SPEC §5.6, issue 12 §4): `dashboard` and the 1:1 chat's welcome show the AM's
ranked accounts as an Adaptive Card (validated against the 1.5 schema) with the same content as the
Slack App Home, paged, refreshed in place when asked; a client gets a polite no."""

from __future__ import annotations

from sqlalchemy import select

from bot.access import Viewer
from bot.dashboard import HOME_PAGE_ACTION, REFRESH_LABEL, home
from bot.replies import Items
from handlers.teams.render import card_text
from store.models import Person
from tests.teams_world import (
    JANE,
    MAYA,
    TeamsBot,
    card_click,
    check_card,
    in_channel,
    in_personal_chat,
    installed,
)
from tests.test_teams_bot import answer


def _home_lines(teams: TeamsBot) -> list[str]:
    """What Maya's Slack App Home lists, from the same function."""
    with teams.sessions() as session:
        maya = session.scalars(select(Person).where(Person.teams_aad_id == MAYA.aad)).one()
        viewer = Viewer("slack", "U01AM0001", True, maya.id, maya.name, maya.role)
        reply = home(session, viewer, teams.clock.now())
    return [line for b in reply.blocks if isinstance(b, Items) for line in b.lines]


def _verb_data(card: dict, label: str) -> dict:
    actions = [a for b in card["body"] if b.get("type") == "ActionSet" for a in b["actions"]]
    actions += card.get("actions") or []
    (found,) = [a for a in actions if a.get("title") == label]
    assert found["verb"] == HOME_PAGE_ACTION
    return found["data"]


def test_dashboard_is_the_app_home_as_a_card_refreshed_in_place(teams: TeamsBot, teams_agency) -> None:
    text = answer(teams, "dashboard", MAYA)
    lines = _home_lines(teams)
    assert text.startswith("Your accounts ·") and lines
    for line in lines:
        assert line.replace("**", "") in text.replace("**", ""), line
    card = check_card(teams.connector.calls[-1].card)
    posted = teams.connector.calls[-1]
    click = card_click(
        MAYA,
        in_personal_chat(MAYA),
        posted.response["id"],
        HOME_PAGE_ACTION,
        _verb_data(card, REFRESH_LABEL),
        teams.service_url,
    )
    response = teams.send(click)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "application/vnd.microsoft.card.adaptive"
    assert card_text(check_card(body["value"])) == text
    assert answer(teams, "dashboard 0", MAYA).startswith("dashboard takes a page number or nothing.")


def test_the_1_1_chat_opens_on_the_dashboard_and_a_client_gets_none(teams: TeamsBot, teams_agency) -> None:
    response = teams.send(installed(MAYA, in_personal_chat(MAYA), teams.service_url))
    assert response.status_code == 201
    sent = [c for c in teams.connector.calls if c.method == "send_to_conversation"]
    assert len(sent) == 2
    assert "Send me the same words as" in card_text(check_card(sent[0].card))
    assert card_text(check_card(sent[1].card)).startswith("Your accounts ·")
    refused = answer(teams, "dashboard", JANE, in_channel("19:acmeshared000000000000000000000@thread.tacv2"))
    assert refused == "The dashboard is for the agency's team."
