"""Platform edges: translate Slack and Teams payloads into core calls and core replies into their UI."""
