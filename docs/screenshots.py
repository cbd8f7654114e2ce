"""Refresh the README's screenshots of the local workspace: `./run screenshots` (or `.venv/bin/python
docs/screenshots.py`). Serves the demo agency in demo mode on a temporary database, uses it in headless
Chromium as its people would, and saves each main view as docs/workspace-*.png."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from retainer.browser import launch, message, move_clock, open_as, request_approval, say, served_demo

DOCS = Path(__file__).resolve().parent
MAYA, SAM, JANE = "U01AM0001", "U01DR0001", "U09AC0001"
ACME, ACME_INTERNAL = "C0ACME0001", "C1ACME0001"


def main() -> int:
    with tempfile.TemporaryDirectory() as folder, served_demo(Path(folder)) as demo, sync_playwright() as pw:
        browser = launch(pw)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
        context.set_default_timeout(15_000)

        def shot(page: object, name: str) -> None:
            path = DOCS / f"workspace-{name}.png"
            page.screenshot(path=str(path))  # type: ignore[attr-defined]
            print(f"saved {path.relative_to(DOCS.parent)}")

        maya = open_as(context, demo, MAYA, ACME)
        say(maya, "/retainer status acme")
        expect(maya.locator("#main .msg.ephemeral")).to_contain_text("Acme Corp")
        shot(maya, "status")
        maya.locator("#main .msg.ephemeral").get_by_role("button", name="Dismiss").click()

        jane = open_as(context, demo, JANE, ACME)
        say(jane, "The second blog post reads well, thanks! Can we see the final version?")
        expect(message(jane, "The second blog post")).to_be_visible()
        maya.reload()
        posted = message(maya, "The second blog post")
        posted.hover()
        posted.get_by_role("button", name="More actions").click()
        expect(posted.get_by_role("button", name="Request approval")).to_be_visible()
        shot(maya, "message-menu")
        maya.keyboard.press("Escape")
        maya.locator("#main .channel-head").click()

        request_approval(maya, "The second blog post", "Blog post 3")
        jane.reload()
        card = message(jane, "Approval: Blog post 3")
        card.get_by_role("button", name="Request changes").click()
        modal = jane.get_by_role("dialog", name="Request changes")
        modal.get_by_role("button", name="Send").click()
        expect(modal.locator(".bk-error")).to_be_visible()
        shot(jane, "changes-form")
        modal.locator("textarea").fill("Please use our product name in the headline.")
        modal.get_by_role("button", name="Send").click()
        expect(message(jane, "Changes requested by Jane Doe")).to_be_visible()
        shot(jane, "card-updated")

        internal = open_as(context, demo, MAYA, ACME_INTERNAL)
        move_clock(internal, "Mid-month", "November 16th")
        expect(internal.locator("#main .msg").last).to_be_visible()
        shot(internal, "checkpoint")

        sam = open_as(context, demo, SAM, ACME)
        sam.locator('[data-open="app"]').click()
        sam.get_by_role("button", name="Messages").click()
        expect(sam.get_by_role("button", name="Snooze 7 days").first).to_be_visible()
        shot(sam, "escalation")

        maya.locator('[data-open="app"]').click()
        maya.get_by_role("button", name="Home").click()
        expect(maya.locator("#main .home")).to_contain_text("Your accounts")
        shot(maya, "home")
        browser.close()
    return 0


if __name__ == "__main__":
    # Options first, so `./run screenshots --help` prints them and touches nothing (no database, no PNG).
    argparse.ArgumentParser(prog="run screenshots", description=__doc__.split("\n\n")[0]).parse_args()
    sys.exit(main())
