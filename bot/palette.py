"""The health levels' colours, in one place: the marks every text view shows (🟢 🟠 🔴) and the same
colours for the charts (bot/plot.py), so a red bar means what a red mark means."""

from __future__ import annotations

from bot.health import Level

LEVEL_MARK = {Level.GREEN: "🟢", Level.AMBER: "🟠", Level.RED: "🔴"}
# The marks' own colours (the circles as chat clients draw them).
LEVEL_COLOUR = {Level.GREEN: "#2eb67d", Level.AMBER: "#f4900c", Level.RED: "#dd2e44"}
INK = "#1d1c1d"  # text, axes and the allocation line
IDEAL = "#8d8d8d"  # the ideal burn line
