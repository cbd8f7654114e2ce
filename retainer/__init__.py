"""The composition root and the command line: builds settings, engine, messengers, Bolt, the Teams
adapter and the clock, and the admin tools (import, demo data, ask). Nothing below imports it."""
