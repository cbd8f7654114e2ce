"""Local stand-ins for external services (see sandbox.slack_api for Slack's Web API)."""
