"""The local Slack workspace: a Slack-compatible Web API (tests, benchmarks, demo mode) and, in demo mode,
a page in the browser to use the bot in it as any of its people."""

from sandbox.slack.state import HELD, Call, RateLimits
from sandbox.slack.web_api import SlackSandbox

__all__ = ["HELD", "Call", "RateLimits", "SlackSandbox"]
