"""The one rule for "this person is on the client's side of this retainer" (bot/access.py), which
guards who may decide an approval, who may be named an approver and who may confirm priorities."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from bot.access import is_client_side
from store.db import unit_of_work
from store.models import MemberRole, Person, RetainerMember, Role
from tests.builders import ACME_CONTACT, AM, DESIGNER, DIRECTOR, GLOBEX_CONTACT, build_agency


def test_the_client_side_of_a_retainer_is_its_clients_contacts_and_its_client_approvers(
    sessions: sessionmaker[Session],
) -> None:
    with unit_of_work(sessions) as session:
        agency = build_agency(session)
        acme, globex, people = agency.acme, agency.globex, agency.people
        # A freelancer the client brought in, approving for Acme but not one of Acme's own contacts.
        outside = Person(name="Rae Lin", role=Role.CLIENT, slack_user_id="U09RL0001")
        # Someone of the agency wrongly listed as an approver: still not the client's side.
        acme.members += [
            RetainerMember(person=outside, role=MemberRole.APPROVER),
            RetainerMember(person=people[DESIGNER], role=MemberRole.APPROVER),
        ]
        session.flush()

        assert is_client_side(people[ACME_CONTACT], acme)
        assert is_client_side(outside, acme)
        assert not is_client_side(outside, globex)
        assert not is_client_side(people[GLOBEX_CONTACT], acme)
        assert is_client_side(people[GLOBEX_CONTACT], globex)
        for internal in (AM, DIRECTOR, DESIGNER):
            assert not is_client_side(people[internal], acme)
        assert not is_client_side(None, acme)
