"""A reply's charts on Slack: those Slack's native chart block can show are sent as that block
(handlers/slack/render.py, nothing to upload); the others are drawn (bot/plot.py) and uploaded with
files_upload_v2 (files.getUploadURLExternal, the bytes, files.completeUploadExternal; shared to no
channel), then shown as image blocks pointing at the file (`slack_file`). A scheduled post's uploads
are kept on its delivery row, so a retry of the post does not upload them twice."""

from __future__ import annotations

from collections.abc import Mapping

from slack_sdk import WebClient
from sqlalchemy.orm import Session, sessionmaker

from bot.charts import record_upload, uploaded
from bot.plot import render_png
from bot.replies import Reply
from handlers.slack.render import native_charts


def to_upload(reply: Reply) -> bool:
    """Whether some chart of `reply` is shown as an uploaded PNG (not as Slack's own chart block)."""
    natives = native_charts(reply)
    return any(chart.figure.key not in natives for chart in reply.charts)


def upload_charts(
    client: WebClient,
    reply: Reply,
    sessions: sessionmaker[Session] | None = None,
    delivery_key: str | None = None,
    have: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Chart key -> Slack file id for each chart of `reply` not shown natively, uploading those not
    uploaded yet (`have`: uploaded for this reply already)."""
    if not to_upload(reply):
        return dict(have or {})
    natives = native_charts(reply)
    keep = sessions if delivery_key is not None else None
    files = dict(have or {})
    if keep is not None and delivery_key is not None:
        files.update(uploaded(keep, delivery_key))
    for chart in reply.charts:
        key = chart.figure.key
        if key in files or key in natives:
            continue
        response = client.files_upload_v2(
            content=render_png(chart.figure),
            filename=f"{key}.png",
            title=chart.figure.title,
            alt_txt=chart.alt[:1000],
        )
        files[key] = str(response["file"]["id"])
        if keep is not None and delivery_key is not None:
            record_upload(keep, delivery_key, key, files[key])
    return files
