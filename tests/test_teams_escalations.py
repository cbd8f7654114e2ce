"""A director's escalation DM on Teams: Acknowledge / Snooze / Open account through Action.Execute,
with the same rules as on Slack (directors only, once, committed before the card changes)."""

from __future__ import annotations

from typing import Any

from bot.escalations import ACKNOWLEDGE_ACTION, OPEN_ACTION, SNOOZE_ACTION
from store.db import unit_of_work
from store.models import Escalation, EscalationState
from tests.teams_world import MAYA, SAM, TeamsBot, TeamsPerson, card_click, check_card, in_personal_chat


def escalation_for(teams: TeamsBot, retainer_id: int) -> int:
    with unit_of_work(teams.sessions) as session:
        escalation = Escalation(
            retainer_id=retainer_id,
            open_for=retainer_id,
            reasons=[{"key": "burn", "level": "red", "text": "hours at 120% with 50% of the month gone"}],
        )
        session.add(escalation)
        session.flush()
        return escalation.id


def click(teams: TeamsBot, person: TeamsPerson, verb: str, escalation_id: int) -> dict[str, Any]:
    activity = card_click(
        person,
        in_personal_chat(person),
        "1:escalation-dm",
        verb,
        {"value": str(escalation_id)},
        teams.service_url,
    )
    response = teams.send(activity)
    assert response.status_code == 200, response.text
    return response.json()


def state(teams: TeamsBot, escalation_id: int) -> EscalationState:
    with unit_of_work(teams.sessions) as session:
        return session.get_one(Escalation, escalation_id).state


def test_director_acknowledges_once_and_the_card_changes_in_place(teams, teams_agency) -> None:
    escalation = escalation_for(teams, teams_agency.acme.id)
    first = click(teams, SAM, ACKNOWLEDGE_ACTION, escalation)
    assert first["type"] == "application/vnd.microsoft.card.adaptive"
    check_card(first["value"])
    assert state(teams, escalation) is EscalationState.ACKNOWLEDGED
    again = click(teams, SAM, ACKNOWLEDGE_ACTION, escalation)
    assert again["value"] == "Sam Reid already acknowledged it. Nothing changed."
    assert state(teams, escalation) is EscalationState.ACKNOWLEDGED


def test_only_a_director_may_act(teams, teams_agency) -> None:
    escalation = escalation_for(teams, teams_agency.acme.id)
    answer = click(teams, MAYA, SNOOZE_ACTION, escalation)
    assert answer["type"] == "application/vnd.microsoft.activity.message"
    assert answer["value"] == "Only a director can act on an escalation. Nothing changed."
    assert state(teams, escalation) is EscalationState.OPEN


def test_open_account_sends_the_internal_status_to_the_director(teams, teams_agency) -> None:
    escalation = escalation_for(teams, teams_agency.acme.id)
    answer = click(teams, SAM, OPEN_ACTION, escalation)
    assert "Acme Corp" in answer["value"]
    sent = teams.connector.wait_for(lambda c: "Acme Corp" in str(c.body) and "Hours" in str(c.body))
    assert sent is not None
    assert state(teams, escalation) is EscalationState.OPEN
