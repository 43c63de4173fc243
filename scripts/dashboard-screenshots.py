#!/usr/bin/env python3
"""Take the dashboard screenshots of the README (docs/dashboard-laptop.png, -phone.png).

Runs `telex run` (embedded broker, the replay live blog) plus a second local source whose
entries repeat a replay story, get edited and come in French, so the pictures show story
groups, edits and languages. Usage: .venv/bin/python scripts/dashboard-screenshots.py
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from telex.kafka.embedded import free_port
from telex.runtime import serve_http

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
]  # fmt: skip
ENTRIES = {
    "d1": (
        "10:48",
        # Another outlet's copy of the replay's 10:46 entry: the same story.
        "Israel should not think that the Holocaust gives it carte blanche when it comes to "
        "foreign policy, Russia's top diplomat Sergey Lavrov said. He acknowledged that while "
        "the deliberate extermination of Jews was a \u201cterrible crime,\u201d so was the "
        "genocide of the Soviet people during the Nazi invasion.</p><p>\u201cAccording to this "
        "logic, we can do whatever we want. That won\u2019t work if we want to systematically "
        "uphold international law,\u201d he said.",
    ),
    "d2": (
        "10:50",
        "Lavrov's annual press conference has ended after almost three hours. He took "
        "questions from Russian and foreign reporters at the ministry in Moscow.",
    ),
    "d3": (
        "10:55",
        "Le ministre russe des Affaires étrangères, Sergueï Lavrov, a affirmé jeudi à Moscou "
        "que l'Occident cherchait à chasser la Russie du Caucase du Sud, selon l'agence TASS.",
    ),
}
EDIT = (
    "d2",
    "Lavrov's annual press conference has ended after two and a half hours. He took "
    "questions from Russian and foreign reporters at the ministry in Moscow.",
)
shown: list[str] = ["d1"]  # a page with no entries at all would count as a failing source


def page() -> str:
    blocks = "".join(
        f'<article id="{anchor}"><span class="t">{ENTRIES[anchor][0]} GMT</span>'
        f"<p>{ENTRIES[anchor][1]}</p></article>"
        for anchor in reversed(shown)
    )
    return f"<html><body><h1>Wire desk</h1><p>18 January 2024</p>{blocks}</body></html>"


async def desk(request: object) -> HTMLResponse:
    return HTMLResponse(page())


async def main() -> None:
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=60_000)
    async with serve_http(Starlette(routes=[Route("/desk", desk)]), "127.0.0.1", 0) as site:
        with tempfile.TemporaryDirectory() as tmp:
            toml = Path(tmp) / "telex.toml"
            toml.write_text(
                '[poller]\nallow_networks = ["127.0.0.0/8"]\n'
                f'[[sources]]\nid = "wire-desk"\nurl = "{site}/desk"\n'
            )
            port = free_port()
            env = {
                **os.environ,
                "TELEX_CONFIG": str(toml),
                "TELEX_HTTP_PORT": str(port),
                "TELEX_REPLAY_INTERVAL": "0.7",
                "TELEX_POLLER_INTERVAL": "0.5",
                "TELEX_LOG_LEVEL": "warning",
            }
            telex = Path(sys.executable).with_name("telex")
            proc = await asyncio.create_subprocess_exec(
                str(telex), "run", env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            assert proc.stdout is not None
            while b"Press Ctrl-C" not in await proc.stdout.readline():
                pass
            try:
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(
                        executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                    )
                    context = await browser.new_context(
                        viewport={"width": 1280, "height": 800},
                        timezone_id="Europe/London",
                        locale="en-GB",
                    )
                    await context.add_init_script(
                        'localStorage.setItem("telex.watch", '
                        'JSON.stringify({terms: ["Israel"], sound: false, notify: false}))'
                    )
                    tab = await context.new_page()
                    await tab.goto(f"http://127.0.0.1:{port}/")
                    for anchor in list(ENTRIES)[1:]:
                        await asyncio.sleep(1.5)
                        shown.append(anchor)
                    await expect(tab.locator(".card")).to_have_count(13)
                    ENTRIES[EDIT[0]] = (ENTRIES[EDIT[0]][0], EDIT[1])
                    await expect(tab.locator(".badge--edited")).to_have_count(1)
                    await tab.locator(".card__diff summary").click()
                    await tab.wait_for_timeout(2000)  # let the flash of the last edit fade
                    await tab.evaluate("document.activeElement.blur()")
                    await tab.screenshot(path=str(ROOT / "docs" / "dashboard-laptop.png"))
                    await tab.set_viewport_size({"width": 390, "height": 844})
                    await tab.evaluate("window.scrollTo(0, 0)")
                    await tab.wait_for_timeout(500)
                    await tab.screenshot(path=str(ROOT / "docs" / "dashboard-phone.png"))
                    await browser.close()
            finally:
                proc.terminate()
                await proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
