"""The platform-neutral core: settings, domain rules, use cases, the neutral message model and the CLI."""
