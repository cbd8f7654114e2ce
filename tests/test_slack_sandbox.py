"""The local Slack Web API sandbox, driven by the real slack_sdk WebClient."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_handlers
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from sandbox.slack import HELD, RateLimits, SlackSandbox


@pytest.fixture
def sandbox() -> Iterator[SlackSandbox]:
    with SlackSandbox() as sb:
        sb.add_user("UALICE", name="alice", real_name="Alice Park", email="alice@northwind.test")
        sb.add_user("UCLIENT", team_id="T0CLIENT", name="cam", email="cam@client.test", tz="Europe/London")
        yield sb


@pytest.fixture
def client(sandbox: SlackSandbox) -> WebClient:
    return WebClient(token=sandbox.bot_token, base_url=sandbox.api_url)


def slack_error(call, *args, **kwargs) -> dict:
    with pytest.raises(SlackApiError) as info:
        call(*args, **kwargs)
    return info.value.response.data


def test_auth_test_identifies_the_bot(sandbox: SlackSandbox, client: WebClient) -> None:
    response = client.auth_test()

    assert response["user_id"] == "UBOTRETAIN"
    assert response["team_id"] == "T0AGENCY"
    assert response["url"] == "https://northwind-studio.slack.com/"
    assert response["is_enterprise_install"] is False
    assert [call.method for call in sandbox.calls] == ["auth.test"]


def test_bad_token_and_unknown_method(sandbox: SlackSandbox) -> None:
    bad = WebClient(token="xoxb-wrong", base_url=sandbox.api_url)
    assert slack_error(bad.auth_test)["error"] == "invalid_auth"
    client = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url)
    assert slack_error(client.api_call, "reminders.add")["error"] == "unknown_method"
    assert [call.status for call in sandbox.calls] == [200, 200]


def test_users_info_internal_external_and_missing(client: WebClient) -> None:
    alice = client.users_info(user="UALICE")["user"]
    cam = client.users_info(user="UCLIENT")["user"]

    assert alice["team_id"] == "T0AGENCY"
    assert alice["profile"]["email"] == "alice@northwind.test"
    assert alice["tz"] == "America/New_York" and alice["tz_offset"] in (-18000, -14400)
    assert cam["team_id"] == "T0CLIENT"  # a Slack Connect user from another workspace
    assert cam["tz_offset"] in (0, 3600)
    assert slack_error(client.users_info, user="UNOBODY")["error"] == "user_not_found"


def test_post_update_permalink_and_state(sandbox: SlackSandbox, client: WebClient) -> None:
    channel = sandbox.add_channel("acme-retainer")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Hours:* 12 of 40"}}]

    first = client.chat_postMessage(channel=channel, text="Hours update", blocks=blocks)
    second = client.chat_postMessage(channel=channel, text="reply", thread_ts=first["ts"])
    client.chat_update(channel=channel, ts=first["ts"], text="Hours update (edited)")
    link = client.chat_getPermalink(channel=channel, message_ts=second["ts"])["permalink"]

    assert first["channel"] == channel and float(second["ts"]) > float(first["ts"])
    assert link == (
        f"https://northwind-studio.slack.com/archives/{channel}/p{second['ts'].replace('.', '')}"
        f"?thread_ts={first['ts']}&cid={channel}"
    )
    top, reply = sandbox.messages(channel)
    assert top["text"] == "Hours update (edited)" and top["blocks"] == blocks and "edited" in top
    assert reply["thread_ts"] == first["ts"]
    assert sandbox.calls_to("chat.postMessage")[0].args["blocks"] == blocks
    assert (
        slack_error(client.chat_update, channel=channel, ts="1.000000", text="x")["error"]
        == "message_not_found"
    )
    assert slack_error(client.chat_postMessage, channel="CNOPE", text="x")["error"] == "channel_not_found"
    with pytest.warns(UserWarning, match="`text` argument is missing"):
        assert slack_error(client.chat_postMessage, channel=channel)["error"] == "no_text"


def test_posting_to_a_user_opens_a_stable_dm(sandbox: SlackSandbox, client: WebClient) -> None:
    first = client.chat_postMessage(channel="UALICE", text="Your timesheet is due")
    second = client.chat_postMessage(channel=first["channel"], text="Reminder")

    assert first["channel"].startswith("D") and second["channel"] == first["channel"]
    assert sandbox.im_channel("UALICE") == first["channel"]
    assert [m["text"] for m in sandbox.messages("UALICE")] == ["Your timesheet is due", "Reminder"]


def test_form_encoded_and_get_requests(sandbox: SlackSandbox, client: WebClient) -> None:
    channel = sandbox.add_channel("general")
    blocks = [{"type": "divider"}]

    client.api_call(
        "chat.postMessage", data={"channel": channel, "blocks": json.dumps(blocks), "text": "[x]"}
    )
    with urllib.request.urlopen(f"{sandbox.api_url}users.info?user=UALICE&token={sandbox.bot_token}") as r:
        body = json.load(r)

    post = sandbox.calls_to("chat.postMessage")[0]
    assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert post.args["blocks"] == blocks and post.args["text"] == "[x]"
    assert body["ok"] is True and body["user"]["name"] == "alice"


def test_conversations_lifecycle(sandbox: SlackSandbox, client: WebClient) -> None:
    created = client.conversations_create(name="acme-q3", is_private=True)["channel"]

    assert created["name"] == "acme-q3" and created["is_private"] is True and created["is_member"] is True
    assert slack_error(client.conversations_create, name="acme-q3")["error"] == "name_taken"
    assert slack_error(client.conversations_create, name="Acme Q3!")["error"] == "invalid_name_specials"
    assert slack_error(client.conversations_create, name="a" * 81)["error"] == "invalid_name_maxlength"

    client.conversations_invite(channel=created["id"], users=["UALICE", "UCLIENT"])
    assert slack_error(client.conversations_invite, channel=created["id"], users="UALICE") == {
        "ok": False,
        "error": "already_in_channel",
    }
    members = client.conversations_members(channel=created["id"])["members"]
    assert members == ["UBOTRETAIN", "UALICE", "UCLIENT"]
    client.pins_add(
        channel=created["id"], timestamp=client.chat_postMessage(channel=created["id"], text="hi")["ts"]
    )
    assert sandbox.messages(created["id"])[0]["pinned_to"] == [created["id"]]

    client.conversations_archive(channel=created["id"])
    assert client.conversations_info(channel=created["id"])["channel"]["is_archived"] is True
    assert slack_error(client.chat_postMessage, channel=created["id"], text="x")["error"] == "is_archived"
    listed = client.conversations_list(types="private_channel", exclude_archived=True)["channels"]
    assert listed == []


def test_not_in_channel_until_joined(sandbox: SlackSandbox, client: WebClient) -> None:
    channel = sandbox.add_channel("client-lounge", bot_is_member=False)

    assert slack_error(client.chat_postMessage, channel=channel, text="hi")["error"] == "not_in_channel"
    client.conversations_join(channel=channel)
    assert client.chat_postMessage(channel=channel, text="hi")["ok"] is True


def test_invite_shared(sandbox: SlackSandbox, client: WebClient) -> None:
    channel = sandbox.add_channel("acme-shared")

    invite = client.conversations_inviteShared(channel=channel, emails=["cam@client.test"])
    assert invite["invite_id"].startswith("I")
    assert client.conversations_info(channel=channel)["channel"]["is_pending_ext_shared"] is True

    sandbox.shared_channels_enabled = False
    error = slack_error(client.conversations_inviteShared, channel=channel, emails="cam@client.test")
    assert error["error"] == "not_paid"


def test_views_open_needs_a_fresh_trigger(sandbox: SlackSandbox, client: WebClient) -> None:
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Log hours"}, "blocks": []}
    trigger = sandbox.new_trigger_id()

    opened = client.views_open(trigger_id=trigger, view=view)["view"]
    assert opened["id"].startswith("V") and opened["title"] == view["title"] and opened["hash"]
    assert slack_error(client.views_open, trigger_id=trigger, view=view)["error"] == "exchanged_trigger_id"
    assert (
        slack_error(client.views_open, trigger_id="123.456.abc", view=view)["error"] == "invalid_trigger_id"
    )

    sandbox.trigger_ttl = 0.0  # every trigger is already past its window
    late = sandbox.new_trigger_id()
    assert slack_error(client.views_open, trigger_id=late, view=view)["error"] == "expired_trigger_id"

    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view={**view, "blocks": []})
    assert updated["view"]["hash"] != opened["hash"]
    error = slack_error(client.views_update, view_id=opened["id"], hash=opened["hash"], view=view)
    assert error["error"] == "hash_conflict"
    home = client.views_publish(user_id="UALICE", view={"type": "home", "blocks": []})["view"]
    assert home["type"] == "home"


def test_rate_limited_call_is_retried_after_retry_after(
    sandbox: SlackSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(builtin_handlers, "time", SimpleNamespace(sleep=slept.append))
    sandbox.fail("auth.test", status=429, retry_after=1)
    client = WebClient(
        token=sandbox.bot_token,
        base_url=sandbox.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )

    assert client.auth_test()["ok"] is True
    assert [call.status for call in sandbox.calls_to("auth.test")] == [429, 200]
    assert sandbox.calls[0].response == {"ok": False, "error": "ratelimited"}
    assert len(slept) == 1 and 1 <= slept[0] < 2  # the client honoured Retry-After: 1


def test_server_error_is_retried(sandbox: SlackSandbox) -> None:
    sandbox.fail("users.info", status=500)
    fast = FixedValueRetryIntervalCalculator(fixed_internal=0.01)
    client = WebClient(
        token=sandbox.bot_token,
        base_url=sandbox.api_url,
        retry_handlers=[ServerErrorRetryHandler(max_retry_count=1, interval_calculator=fast)],
    )

    assert client.users_info(user="UALICE")["user"]["id"] == "UALICE"
    assert [call.status for call in sandbox.calls_to("users.info")] == [500, 200]


def test_error_fault_answers_http_200(sandbox: SlackSandbox, client: WebClient) -> None:
    sandbox.fail("auth.test", error="account_inactive", times=2)

    assert slack_error(client.auth_test)["error"] == "account_inactive"
    assert slack_error(client.auth_test)["error"] == "account_inactive"
    assert client.auth_test()["ok"] is True


def test_timeout_holds_one_request_and_serves_others(sandbox: SlackSandbox, client: WebClient) -> None:
    sandbox.fail("chat.postMessage", timeout=True)
    channel = sandbox.add_channel("ops")
    slow = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url, timeout=0.3, retry_handlers=[])  # type: ignore[arg-type]
    outcome: list[BaseException] = []

    def post() -> None:
        try:
            slow.chat_postMessage(channel=channel, text="stuck")
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=post)
    worker.start()
    held = sandbox.wait_for("chat.postMessage")
    assert client.auth_test()["ok"] is True  # answered while the post is still held
    worker.join(timeout=5)

    assert held.status == HELD
    assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError | urllib.error.URLError)
    assert client.chat_postMessage(channel=channel, text="fine")["ok"] is True
    assert [m["text"] for m in sandbox.messages(channel)] == ["fine"]


def test_rate_limits_per_channel() -> None:
    with SlackSandbox(rate_limits=RateLimits(per_channel_per_second=1, per_channel_burst=3)) as sandbox:
        client = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url)
        busy, quiet = sandbox.add_channel("busy"), sandbox.add_channel("quiet")

        for n in range(3):
            client.chat_postMessage(channel=busy, text=f"burst {n}")
        with pytest.raises(SlackApiError) as info:
            client.chat_postMessage(channel=busy, text="one too many")
        client.chat_postMessage(channel=quiet, text="still fine")

    assert info.value.response.status_code == 429
    assert info.value.response.headers["Retry-After"] == "1"
    assert sandbox.rate_limited_count == 1
    assert sandbox.message_counts() == {busy: 3, quiet: 1}


def test_workspace_rate_limit() -> None:
    limits = RateLimits(per_channel_burst=5, workspace_per_second=0.5, workspace_burst=2)
    with SlackSandbox(rate_limits=limits) as sandbox:
        client = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url)
        channels = [sandbox.add_channel(f"c{n}") for n in range(3)]
        client.chat_postMessage(channel=channels[0], text="1")
        client.chat_postMessage(channel=channels[1], text="2")
        with pytest.raises(SlackApiError) as info:
            client.chat_postMessage(channel=channels[2], text="3")

    assert info.value.response.headers["Retry-After"] == "2"
    assert sandbox.message_counts() == {channels[0]: 1, channels[1]: 1}


def test_response_url_post(sandbox: SlackSandbox) -> None:
    url = sandbox.response_url()

    answer = httpx.post(url, json={"text": "Logged 2h to Acme", "replace_original": True})
    unknown = httpx.post(f"{sandbox.base_url}/response/nope", json={"text": "x"})

    assert (answer.status_code, answer.text) == (200, "ok")
    assert unknown.status_code == 404
    call = sandbox.wait_for(lambda c: c.method == "response_url" and c.status == 200)
    assert call.args == {"text": "Logged 2h to Acme", "replace_original": True}


def test_wait_for_reports_calls_seen(sandbox: SlackSandbox, client: WebClient) -> None:
    client.auth_test()

    with pytest.raises(AssertionError, match=r"auth\.test->200"):
        sandbox.wait_for("chat.postMessage", timeout=0.05)
