"""Carrying out a new retainer's setup plan on Slack, after the form has closed: create the channel
(or offer the existing one), invite the team, share it with each contact (Slack Connect, one call per
contact within its rate tier), post and pin the welcome, and report every outcome in a DM thread."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.access import Viewer
from bot.core import Core
from bot.feedback import Invalid
from bot.handoff import INVITES_PER_MINUTE
from bot.messenger import DeliveryError, Posted
from bot.onboarding import (
    NewRetainer,
    Problem,
    SetupPlan,
    Step,
    StepResult,
    link_offer,
    setup_report,
    setup_started,
)
from bot.replies import Reply, error
from handlers.slack.messenger import ChannelMessenger
from handlers.slack.workspace import Workspace

log = logging.getLogger(__name__)

PLAN_ERRORS = {"not_paid", "paid_only", "team_not_paid", "feature_not_enabled"}
NOT_ALLOWED_ERRORS = {
    "restricted_action",
    "not_allowed_token_type",
    "missing_scope",
    "no_permission",
    "not_authorized",
    "invite_not_allowed",
    "cannot_share",
    "ekm_access_denied",
}


class MinuteWindow:
    """At most `per_minute` calls in any 60 seconds, kept on our side so a burst of invitations
    stays inside the method's rate tier instead of leaning on 429s."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            while self._calls and now - self._calls[0] >= 60:
                self._calls.popleft()
            if len(self._calls) >= self.per_minute:
                time.sleep(60 - (now - self._calls[0]))
            self._calls.append(time.monotonic())


def problem_of(code: str) -> Problem:
    if code in PLAN_ERRORS:
        return Problem.PLAN
    if code in NOT_ALLOWED_ERRORS:
        return Problem.NOT_ALLOWED
    return Problem.FAILED


def code_of(err: SlackApiError) -> str:
    return str(err.response.get("error") or f"HTTP {err.response.status_code}")


class ChannelSetup:
    """One workspace's channel setups; safe to run several at once from lazy listeners."""

    def __init__(self, core: Core, workspace: Workspace) -> None:
        self.core = core
        self.workspace = workspace
        self.client: WebClient = workspace.client
        self.messenger = ChannelMessenger(workspace.client)
        self.share_pacer = MinuteWindow(INVITES_PER_MINUTE)  # inviteShared: Tier 2, 20+ a minute

    def create_and_set_up(self, data: NewRetainer, user_id: str) -> None:
        """Write the retainer, then set its channel up, telling `user_id` how it went in a DM thread."""
        viewer = self.core.people.identify("slack", user_id, self.workspace.profile)
        unknown = self.core.onboarding.unknown_people(data, "slack")
        profiles = {u: self.workspace.profile(u) for u in unknown}
        created = self.core.onboarding.create(data, profiles, viewer)
        if isinstance(created, Invalid):
            problems = "; ".join(created.errors.values())
            text = f"I did not create the retainer for {data.name}: {problems}"
            self._send(user_id, error(text))
            return
        plan, minutes = created
        self.set_up_channel(plan, viewer, user_id, setup_started(plan, minutes))

    def set_up_channel(self, plan: SetupPlan, viewer: Viewer, user_id: str, intro: Reply) -> None:
        """The channel of a retainer just written, `user_id` told how it went: `intro` in a DM, the
        report in its thread (also after a CRM's deal won, bot/handoff.py). A set-up finished after it
        was interrupted (`plan.resumed`) reports in the thread of the DM that began it, if that was
        sent: one DM. A fresh set-up has sent nothing yet, so it looks for nothing."""
        marker = f"setup:{plan.retainer_id}"
        found = self._find(user_id, marker) if plan.resumed else None
        parent = found or self._send(user_id, intro, marker=marker)
        results = self._channel(plan, viewer)
        self._finish(plan, results, viewer, parent)

    def link_existing(
        self, retainer_id: int, channel_id: str, name: str, viewer: Viewer, parent: Posted | None
    ) -> Reply | None:
        """Bind an existing channel offered after `name_taken` and set it up like a new one, the
        report going to the setup's thread (`parent`); a private answer if it cannot be bound."""
        bound = self.core.onboarding.bind(retainer_id, "slack", channel_id, name, viewer)
        if not bound.ok:
            return bound.reply
        plan = self.core.onboarding.plan(retainer_id, viewer)
        if plan is not None:
            self.messenger.join(channel_id)
            results = [StepResult(Step.CHANNEL, True, name), *self._fill(plan, channel_id, viewer)]
            self._finish(plan, results, viewer, parent)
        return None

    # ----- the steps -----------------------------------------------------------------------------

    def _channel(self, plan: SetupPlan, viewer: Viewer) -> list[StepResult]:
        name = plan.channel_name
        if plan.channel_id is not None:  # created before the set-up was interrupted: finish it there
            self.messenger.join(plan.channel_id)
            return [StepResult(Step.CHANNEL, True, name), *self._fill(plan, plan.channel_id, viewer)]
        try:
            channel_id = self.client.conversations_create(name=name)["channel"]["id"]
        except SlackApiError as err:
            code = code_of(err)
            if code != "name_taken":
                return [StepResult(Step.CHANNEL, False, name, problem_of(code), code)]
            return [self._name_taken(plan)]
        bound = self.core.onboarding.bind(plan.retainer_id, "slack", channel_id, name, viewer)
        if not bound.ok:
            return [StepResult(Step.CHANNEL, False, name, Problem.FAILED, bound.reply.text)]
        return [StepResult(Step.CHANNEL, True, name), *self._fill(plan, channel_id, viewer)]

    def _name_taken(self, plan: SetupPlan) -> StepResult:
        name = plan.channel_name
        existing = self._find_channel(name)
        if existing is None:
            return StepResult(Step.CHANNEL, False, name, Problem.NAME_TAKEN, "hidden")
        other = self.core.onboarding.binding_of("slack", existing)
        if other is not None:
            return StepResult(Step.CHANNEL, False, name, Problem.NAME_TAKEN, f"belongs:{other}")
        return StepResult(Step.CHANNEL, False, name, Problem.NAME_TAKEN, f"offer:{existing}")

    def _find_channel(self, name: str) -> str | None:
        """The id of the public, unarchived channel called `name` (private ones are invisible)."""
        try:
            for page in self.client.conversations_list(
                types="public_channel", exclude_archived=True, limit=200
            ):
                for channel in page.get("channels") or []:
                    if channel.get("name") == name:
                        return str(channel["id"])
        except SlackApiError as err:
            log.warning("could not list channels to find #%s: %s", name, code_of(err))
        return None

    def _fill(self, plan: SetupPlan, channel_id: str, viewer: Viewer) -> list[StepResult]:
        results = [self._invite(channel_id, user_id, name) for user_id, name in plan.internal]
        results += self._share(channel_id, plan, viewer)
        results += self._welcome(channel_id, plan)
        return results

    def _invite(self, channel_id: str, user_id: str, name: str) -> StepResult:
        # One person per call: Slack refuses the whole list for one bad id, and the report names who.
        try:
            self.client.conversations_invite(channel=channel_id, users=user_id)
        except SlackApiError as err:
            code = code_of(err)
            if code != "already_in_channel":
                return StepResult(Step.INVITE, False, name, problem_of(code), code)
        return StepResult(Step.INVITE, True, name)

    def _share(self, channel_id: str, plan: SetupPlan, viewer: Viewer) -> list[StepResult]:
        results: list[StepResult] = []
        emails = plan.contacts
        for n, email in enumerate(emails):
            if email in plan.shared:  # invited before the set-up died: once is enough
                results.append(StepResult(Step.SHARE, True, email))
                continue
            self.share_pacer.wait()
            try:
                self.client.conversations_inviteShared(channel=channel_id, emails=email)
            except SlackApiError as err:
                code = code_of(err)
                results.append(StepResult(Step.SHARE, False, email, problem_of(code), code))
                if problem_of(code) is Problem.PLAN:
                    # The same answer for every contact: say so for the rest without asking again.
                    results += [StepResult(Step.SHARE, False, e, Problem.PLAN, code) for e in emails[n + 1 :]]
                    break
                continue
            self.core.onboarding.shared(plan.retainer_id, channel_id, email, viewer)
            results.append(StepResult(Step.SHARE, True, email))
        return results

    def _welcome(self, channel_id: str, plan: SetupPlan) -> list[StepResult]:
        # Posted once: a set-up finished after an interruption finds the welcome it posted (by its
        # metadata marker) and only pins it; if the channel cannot be read, nothing is posted.
        marker = f"welcome:{plan.retainer_id}"
        try:
            found = self.messenger.find(channel_id, marker) if plan.resumed else None
            posted = found or self.messenger.post(channel_id, plan.welcome, marker=marker)
        except DeliveryError as err:
            return [StepResult(Step.WELCOME, False, problem=Problem.FAILED, detail=err.reason)]
        try:
            self.client.pins_add(channel=posted.conversation, timestamp=posted.message_id)
        except SlackApiError as err:
            if code_of(err) != "already_pinned":
                return [StepResult(Step.PIN, False, problem=Problem.FAILED, detail=code_of(err))]
        return [StepResult(Step.PIN, True)]

    # ----- the report ----------------------------------------------------------------------------

    def _finish(
        self, plan: SetupPlan, results: list[StepResult], viewer: Viewer, parent: Posted | None
    ) -> None:
        self.core.onboarding.record(plan.retainer_id, results, viewer)
        report = setup_report(plan, results)
        thread = parent.message_id if parent else None
        where = parent.conversation if parent else viewer.user_id
        self._send(where, report, thread=thread)
        for r in results:
            if r.problem is Problem.NAME_TAKEN and r.detail.startswith("offer:"):
                channel_id = r.detail.removeprefix("offer:")
                value = json.dumps({"r": plan.retainer_id, "c": channel_id, "n": plan.channel_name})
                self._send(where, link_offer(plan, value), thread=thread)
        if parent is not None:
            try:
                self.messenger.update(parent.conversation, parent.message_id, report)
            except DeliveryError as err:
                log.warning("setup summary for %s not updated: %s", plan.client_name, err.reason)

    def _send(
        self, to: str, reply: Reply, *, thread: str | None = None, marker: str | None = None
    ) -> Posted | None:
        try:
            if thread is None and to[:1] in ("U", "W"):
                return self.messenger.direct(to, reply, marker=marker)
            return self.messenger.post(to, reply, thread=thread, marker=marker)
        except DeliveryError as err:
            log.error("setup message to %s not delivered (%s): %s", to, err.reason, reply.text)
            return None

    def _find(self, to: str, marker: str) -> Posted | None:
        try:
            return self.messenger.find(to, marker)
        except DeliveryError as err:  # then a second DM, rather than none to report in
            log.warning("could not look for the set-up DM to %s: %s", to, err.reason)
            return None
