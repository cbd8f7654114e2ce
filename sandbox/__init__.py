"""Local stand-ins for external services, knowing nothing of the bot: slack/ (a Slack-compatible Web API
and the local workspace page) and bot_connector.py (a Bot Connector for Teams)."""
