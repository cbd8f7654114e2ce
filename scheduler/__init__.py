"""The clock (DESIGN §3): APScheduler asks the core what is due; the database is the schedule."""
