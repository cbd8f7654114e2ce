"""The local Slack Web API server's former home, kept so `python -m sandbox.slack_api` and old imports
work: it lives in sandbox/slack/ now."""

from sandbox.slack.state import HELD, Call, RateLimits
from sandbox.slack.web_api import SlackSandbox, main

__all__ = ["HELD", "Call", "RateLimits", "SlackSandbox", "main"]

if __name__ == "__main__":
    main()
