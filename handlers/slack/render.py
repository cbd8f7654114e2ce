"""Block Kit rendering of the core's neutral replies: pure functions, and the only place that knows
Block Kit's limits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.charts import Bars, Figure
from bot.parsing import plural
from bot.replies import (
    MENTION,
    MOMENT,
    Actions,
    Bar,
    Block,
    Chart,
    Context,
    Divider,
    Facts,
    Header,
    Items,
    Reply,
    Table,
    Text,
    Tone,
    plain_moments,
)

MAX_BLOCKS = 50
MAX_HOME_BLOCKS = 100  # an App Home view; the dashboard groups accounts into sections and pages
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_CONTEXT_TEXT = 3000
MAX_FALLBACK_TEXT = 3000
MAX_ALT_TEXT = 2000
MAX_IMAGE_TITLE = 2000
# Slack's native chart (docs.slack.dev/reference/block-kit/blocks/data-visualization-block): a title of
# 50 characters, 1-6 series of 1-20 points (a legend name of 20), x-axis categories of 20 characters,
# axis titles of 50; and, as slack-morphism reads the same page, at most two such blocks a message.
MAX_CHART_TITLE = 50
MAX_CHART_SERIES = 6
MAX_CHART_POINTS = 20
MAX_CHART_LABEL = 20
MAX_AXIS_TITLE = 50
MAX_CHARTS_PER_MESSAGE = 2
# Slack's table block (docs.slack.dev/reference/block-kit/blocks/table-block): up to 100 rows of 20
# cells, column settings for 20; one table a message, so a message's further tables are lines.
MAX_TABLE_ROWS = 100
MAX_TABLE_CELLS = 20
CHART_MODES = ("native", "png")
NATIVE_KINDS = ("data_visualization", "table")  # Slack's newer blocks, not rolled out everywhere


class NativeBlocks:
    """Whether messages carry Slack's own chart (`data_visualization`) and `table` blocks in this
    process: charts as RETAINER_SLACK_CHARTS says (set once at start-up, retainer/app.py), tables
    always, until the workspace refuses them with invalid_blocks (not rolled out there: `refused`,
    handlers/slack/messenger.py); from then on charts are uploaded PNGs and tables lines."""

    def __init__(self) -> None:
        self.charts = self.tables = True
        self.taken = False  # a message with such blocks has landed: the workspace has them

    def use(self, mode: str) -> None:
        """Show charts as Slack's native blocks where they can be ("native", the default), or always
        as uploaded PNGs ("png", for workspaces that prefer images)."""
        if mode not in CHART_MODES:
            raise ValueError(f"charts are shown {' or '.join(CHART_MODES)}, not {mode!r}")
        self.charts, self.tables, self.taken = mode == "native", True, False

    def refused(self) -> None:
        self.charts = self.tables = False


NATIVE = NativeBlocks()  # the process's one workspace


def use_charts(mode: str) -> None:
    NATIVE.use(mode)


def carries_native(message: Mapping[str, Any]) -> bool:
    """Whether a rendered message has a native chart or table block (that a workspace may refuse)."""
    return any(block.get("type") in NATIVE_KINDS for block in message.get("blocks") or [])


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")
BUTTON_STYLE = {Tone.GOOD: "primary", Tone.DANGER: "danger"}


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(text: str) -> str:
    """Neutral markup to Slack mrkdwn: **bold** -> *bold*, [label](url) -> <url|label>, instants to
    Slack date formatting (shown in each reader's own timezone), the rest escaped."""
    # Each pattern only where its marker is: most lines have none (a status renders ~20 of them).
    text = escape(text)
    if "**" in text:
        text = _BOLD.sub(r"*\1*", text)
    if "](" in text:
        text = _LINK.sub(lambda m: f"<{m[2]}|{m[1]}>", text)
    if "{{" in text:
        text = MENTION.sub(lambda m: f"<@{m[1]}>", text)
        text = MOMENT.sub(lambda m: f"<!date^{m[1]}^{{date_short_pretty}} at {{time}}|{m[2]}>", text)
    return text


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}}


def _items(block: Items) -> list[dict[str, Any]]:
    lines = [f"• {mrkdwn(line)}" for line in block.lines] or [f"_{escape(block.empty)}_"]
    if block.more:
        lines.append(f"…and {block.more} more")
    chunks: list[str] = []
    current = f"*{escape(block.title)}*"
    for line in lines:
        line = clip(line, MAX_SECTION_TEXT - 100)
        if len(current) + 1 + len(line) > MAX_SECTION_TEXT:
            chunks.append(current)
            current = line
        else:
            current += "\n" + line
    chunks.append(current)
    return [_section(chunk) for chunk in chunks]


def native_chart(figure: Figure) -> dict[str, Any] | None:
    """The chart as Slack's own `data_visualization` block, drawn by Slack (no upload, no scope); None
    for one the block cannot express: the month's burn (a line over up to 31 days that stops today,
    past the 20 points of a series and without a point for every category), or more than 20 bars."""
    if not isinstance(figure, Bars) or not figure.labels or len(figure.labels) > MAX_CHART_POINTS:
        return None
    categories = [clip(label, MAX_CHART_LABEL) for label in figure.labels]
    if len(set(categories)) != len(categories):
        return None
    hours = figure.unit == "h"
    names = ("Hours used", "Allocated") if hours else ("Asked for", "Baseline")
    series = [
        {
            "name": name,
            "data": [
                {"label": c, "value": round(v / 60, 2) if hours else v}
                for c, v in zip(categories, values, strict=True)
            ],
        }
        for name, values in zip(names, (figure.values, figure.targets), strict=True)
    ]
    return {
        "type": "data_visualization",
        "title": clip(figure.title, MAX_CHART_TITLE),
        "chart": {
            "type": "bar",
            "series": series,
            "axis_config": {"categories": categories, "y_label": "hours" if hours else "deliverables"},
        },
    }


def native_charts(reply: Reply) -> dict[str, dict[str, Any]]:
    """Chart key -> its native block, for the reply's charts the block can express (at most
    MAX_CHARTS_PER_MESSAGE), when the workspace shows charts natively (handlers/slack/charts.py)."""
    natives: dict[str, dict[str, Any]] = {}
    if not NATIVE.charts:
        return natives
    for chart in reply.charts:
        block = native_chart(chart.figure)
        if block is not None and len(natives) < MAX_CHARTS_PER_MESSAGE:
            natives[chart.figure.key] = block
    return natives


def render_block(
    block: Block,
    files: Mapping[str, str] | None = None,
    natives: Mapping[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One neutral block as Block Kit. A chart is Slack's native chart (`natives`, with its alt text
    beneath for screen readers and apps that do not draw it) or an image block of its uploaded PNG
    (`files`: chart key -> Slack file id, handlers/slack/charts.py); one not uploaded (yet) is left
    out: the blocks around it say its numbers in words."""
    match block:
        case Chart(figure) if figure.key in (natives or {}):
            alt = {"type": "mrkdwn", "text": clip(escape(block.alt), MAX_CONTEXT_TEXT)}
            return [(natives or {})[figure.key], {"type": "context", "elements": [alt]}]
        case Chart(figure):
            file_id = (files or {}).get(figure.key)
            if file_id is None:
                return []
            return [
                {
                    "type": "image",
                    "slack_file": {"id": file_id},
                    "alt_text": clip(block.alt, MAX_ALT_TEXT),
                    "title": {"type": "plain_text", "text": clip(figure.title, MAX_IMAGE_TITLE)},
                }
            ]
        case Header(text):
            return [
                {
                    "type": "header",
                    "text": {
                        "type": "plain_text",
                        "text": clip(plain_moments(text), MAX_HEADER_TEXT),
                        "emoji": True,
                    },
                }
            ]
        case Text(text):
            return [_section(mrkdwn(text))]
        case Facts(pairs):
            fields = [
                {"type": "mrkdwn", "text": clip(f"*{escape(label)}*\n{mrkdwn(value)}", MAX_FIELD_TEXT)}
                for label, value in pairs
            ]
            return [
                {"type": "section", "fields": fields[i : i + MAX_FIELDS]}
                for i in range(0, len(fields), MAX_FIELDS)
            ]
        case Bar():
            text = f"*{escape(block.label)}*  `{block.gauge()}`  {block.amounts} {escape(block.unit)}"
            return [_section(text)]
        case Items():
            return _items(block)
        case Table(title, columns, rows):
            header = [columns, *rows][:MAX_TABLE_ROWS]
            cells = [
                [{"type": "raw_text", "text": cell or " "} for cell in row[:MAX_TABLE_CELLS]]
                for row in header
            ]
            settings = [{"align": "left"}, *({"align": "right"} for _ in columns[1:MAX_TABLE_CELLS])]
            table = [
                _section(f"*{escape(title)}*"),
                {"type": "table", "rows": cells, "column_settings": settings},
            ]
            left_out = len(rows) + 1 - len(header)
            if left_out > 0:  # past Slack's rows a table: said, as Items says its "N more"
                more = {"type": "mrkdwn", "text": f"…and {plural(left_out, 'more row')}"}
                table.append({"type": "context", "elements": [more]})
            return table
        case Context(text):
            return [
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": clip(mrkdwn(text), MAX_CONTEXT_TEXT)}],
                }
            ]
        case Divider():
            return [{"type": "divider"}]
        case Actions(buttons):
            elements = []
            for button in buttons[:25]:
                element: dict[str, Any] = {
                    "type": "button",
                    "text": {
                        "type": "plain_text",
                        "text": clip(button.label, MAX_BUTTON_TEXT),
                        "emoji": True,
                    },
                    "action_id": button.action,
                    "value": button.value[:MAX_BUTTON_VALUE],
                }
                if button.style in BUTTON_STYLE:
                    element["style"] = BUTTON_STYLE[button.style]
                elements.append(element)
            return [{"type": "actions", "elements": elements}]
    raise TypeError(f"cannot render {block!r}")


def render_blocks(
    reply: Reply, max_blocks: int = MAX_BLOCKS, files: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    natives = native_charts(reply) if files is not None else {}
    # One native table a message (while the workspace takes them); further tables are lines.
    first_table = next((b for b in reply.blocks if isinstance(b, Table)), None) if NATIVE.tables else None
    blocks = [
        rendered
        for block in reply.blocks
        for rendered in render_block(
            Items(block.title, block.lines)
            if isinstance(block, Table) and block is not first_table
            else block,
            files,
            natives,
        )
    ]
    if len(blocks) > max_blocks:
        hidden = len(blocks) - (max_blocks - 1)
        blocks = [
            *blocks[: max_blocks - 1],
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"…{hidden} more sections not shown"}],
            },
        ]
    return blocks


def render_message(reply: Reply, files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`text` and `blocks` for chat.postMessage, chat.update, an ack or a response_url post; `files`
    are the charts' uploaded PNGs."""
    return {
        "text": clip(plain_moments(reply.text), MAX_FALLBACK_TEXT),
        "blocks": render_blocks(reply, files=files or {}),
    }


def render_home(reply: Reply) -> dict[str, Any]:
    """The `view` for views.publish: the reply as an App Home tab, within its 100 blocks."""
    return {"type": "home", "blocks": render_blocks(reply, MAX_HOME_BLOCKS)}


def _plain(mrkdwn_text: str) -> str:
    text = re.sub(r"<!date\^\d+\^[^|>]*\|([^>]*)>", r"\1", mrkdwn_text)
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r"\2 (\1)", text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def as_text(message: dict[str, Any]) -> str:
    """A Block Kit message as readable plain text, for terminals (`retainer ask`) and logs."""
    lines: list[str] = []
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind == "header":
            title = block["text"]["text"]
            lines += [title, "=" * min(len(title), 60)]
        elif kind == "section":
            if "text" in block:
                lines.append(_plain(block["text"]["text"]))
            for f in block.get("fields", []):
                label, _, value = _plain(f["text"]).partition("\n")
                lines.append(f"{label}: {value}")
        elif kind == "context":
            lines.append("  " + " ".join(_plain(e.get("text", "")) for e in block["elements"]))
        elif kind == "divider":
            lines.append("-" * 40)
        elif kind == "table":
            lines.extend(" | ".join(cell.get("text", "") for cell in row) for row in block["rows"])
        elif kind == "actions":
            lines.append("  ".join(f"[ {e['text']['text']} ]" for e in block["elements"] if "text" in e))
    if not lines:
        lines.append(_plain(message.get("text", "")))
    return "\n".join(lines)
