"""The platform-neutral core: settings, domain rules, use cases and the neutral message model."""
