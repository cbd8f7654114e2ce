"""The local workspace in a headless Chromium: the demo agency served as `retainer serve` serves it in demo
mode, and what a person does in the page (type, use a message's menu, move the clock). Shared by the
page's browser tests and docs/screenshots.py; needs Playwright (the dev extras) and Debian's chromium."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.clock import ShiftedClock
from bot.config import load_settings
from retainer.app import BackgroundServer, Runtime, build_runtime
from retainer.demo import DemoSummary, fill_demo
from store.db import make_engine, make_sessionmaker, unit_of_work, upgrade

CHROMIUM = Path("/usr/bin/chromium")
# Playwright's own browser download is not used: Debian's chromium, headless, quiet, offline.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# A Monday morning in London before mid-month: the demo agency as the browser tests and screenshots see it.
START = dt.datetime(2026, 11, 9, 10, 0, tzinfo=dt.UTC)


def chromium_path() -> str | None:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright: Any) -> Any:
    path = chromium_path()
    if path is None:
        raise RuntimeError("no Chromium: apt-get install -y chromium")
    return playwright.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS))


@dataclass
class ServedDemo:
    """The demo agency in demo mode on a free port: its runtime, server and what demo-data made."""

    runtime: Runtime
    server: BackgroundServer
    summary: DemoSummary

    def url(self, user: str, channel: str) -> str:
        return f"{self.server.url}/?as={user}&channel={channel}"


@contextlib.contextmanager
def served_demo(folder: Path, *, start: dt.datetime = START, retainers: int = 12) -> Iterator[ServedDemo]:
    """A fresh SQLite database in `folder` with the demo agency as of `start`, served in demo mode
    (the local workspace and its page) with a clock that starts at `start`."""
    url = f"sqlite:///{folder / 'retainer.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with unit_of_work(make_sessionmaker(engine)) as session:
        summary = fill_demo(session, retainers=retainers, months=4, seed=0, today=start)
    engine.dispose()
    runtime = build_runtime(load_settings(_env_file=None, database_url=url), clock=ShiftedClock(start))
    server = BackgroundServer(runtime.web)
    try:
        yield ServedDemo(runtime, server, summary)
    finally:
        server.stop()
        runtime.close()


# ----- what a person does in the page ------------------------------------------------------------


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def open_as(context: Any, demo: ServedDemo, user: str, channel: str) -> Any:
    page = context.new_page()
    page.goto(demo.url(user, channel))
    _expect()(page.locator("#sidebar .side-item.active")).to_be_visible()
    return page


def front(page: Any) -> Any:
    """Bring `page` to the front: several people's pages are open at once, and Chromium barely paints
    the ones behind (Playwright then waits seconds for what it clicks to be stable)."""
    page.bring_to_front()
    return page


def say(page: Any, text: str) -> None:
    """Type in the open conversation's message box and press Enter."""
    box = front(page).locator("#main .composer textarea")
    box.fill(text)
    box.press("Enter")


def message(page: Any, text: str) -> Any:
    """The message containing `text` in the open conversation, on `page` brought to the front."""
    return front(page).locator("#main .msg", has_text=text)


def use_shortcut(page: Any, text: str, shortcut: str) -> None:
    """Open the menu of the message containing `text` and pick the message shortcut `shortcut`."""
    posted = message(page, text)
    posted.hover()
    posted.get_by_role("button", name="More actions").click()
    posted.get_by_role("button", name=shortcut).click()


def move_clock(page: Any, to: str, lands_on: str) -> None:
    """Click a clock button and wait until the move (and the scheduler's ticks on the way) is done."""
    button = front(page).get_by_role("button", name=f"{to} →")
    button.click()
    _expect()(button).to_be_enabled(timeout=30_000)  # disabled while the clock moves and the scheduler ticks
    _expect()(page.locator("#now")).to_contain_text(lands_on)


def request_approval(page: Any, text: str, task: str) -> Any:
    """As an AM: Request approval on the message `text`, pick `task`, send; returns the card."""
    expect = _expect()
    use_shortcut(page, text, "Request approval")
    modal = page.get_by_role("dialog", name="Request approval")
    expect(modal).to_be_visible()
    option = modal.locator('[data-input-block="task"] option', has_text=task)
    modal.locator('[data-input-block="task"] select').select_option(option.get_attribute("value"))
    modal.get_by_role("button", name="Send for approval").click()
    expect(modal).to_be_hidden()
    card = message(page, f"Approval: {task}")
    expect(card.get_by_role("button", name="Approve")).to_be_visible()
    return card
