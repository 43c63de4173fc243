"""The dashboard in headless Chromium against telex running as separate processes.

Each test writes to its own page of the local site (its own source), so the tests do not
depend on each other's order; the pipeline (poller -> processor -> gateway) is real.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from playwright.async_api import Page, expect

from tests.e2e.conftest import Frames, Stack
from tests.integration.test_pipeline import read_topic

PageFixture = tuple[Page, Frames, list[str]]

DATETIMES_BY_STORY = """() => [...document.querySelectorAll('#wire > .story')].map(
    (story) => [...story.querySelectorAll('.card time')].map((t) => t.getAttribute('datetime')))"""


UNNAMED_CONTROLS = """() => [...document.querySelectorAll('input, button, a, select, textarea')]
    .filter((el) => {
        const name = (el.getAttribute('aria-label') || (el.labels && el.labels.length
            ? el.labels[0].textContent : el.textContent) || '').trim();
        return !name;
    }).map((el) => el.outerHTML.slice(0, 80))"""


async def wire_events(stack: Stack) -> list[dict[str, Any]]:
    records = await read_topic(stack.config.kafka.bootstrap, stack.config.topics.wire)
    return [orjson.loads(r.value) for r in records]


async def test_updates_arrive_newest_first_and_in_place(stack: Stack, page: PageFixture) -> None:
    tab, _, errors = page
    desk = stack.desks["desk-order"]
    # Two sources, not the whole wire: another test floods it past the backlog a view gets.
    await tab.goto(stack.url + "/?sources=replay,desk-order")
    await tab.evaluate("window.sameDocument = true")
    await expect(tab.locator("#status")).to_have_attribute("data-state", "live")
    # The replayed live blog: its ten entries, the newest on top.
    await expect(tab.locator('.card[data-source="replay"]')).to_have_count(10)

    entries = [
        ("o1", "11:00", "Ukraine asked its allies for more air defence systems on Thursday, "
         "officials in Kyiv told reporters after a night of attacks on the capital."),
        ("o2", "11:05", "The European Union is preparing a new package of sanctions, diplomats "
         "in Brussels said, with a decision expected before the end of the month."),
        ("o3", "11:10", "Sergey Lavrov met envoys in Berlin on Thursday afternoon. "
         "\u201cWe will not accept new sanctions against our economy,\u201d Lavrov said "
         "after the meeting."),
    ]  # fmt: skip
    first = tab.locator("#wire .card").first
    for anchor, time, text in entries:
        desk.add(anchor, time, text)
        # Each one appears on top as it is published, without a reload.
        await expect(first).to_contain_text(text.split(",")[0])
        await expect(first).to_have_attribute("data-source", "desk-order")

    by_story = await tab.evaluate(DATETIMES_BY_STORY)
    assert all(story == sorted(story, reverse=True) for story in by_story)
    heads = [story[0] for story in by_story]
    assert heads == sorted(heads, reverse=True), heads
    desk_times = await tab.locator('.card[data-source="desk-order"] time').evaluate_all(
        "els => els.map((t) => t.getAttribute('datetime'))"
    )
    assert desk_times == [
        "2024-01-18T11:10:00Z",
        "2024-01-18T11:05:00Z",
        "2024-01-18T11:00:00Z",
        "2024-01-18T08:00:00Z",
    ]

    # What a card shows: time (the original string on hover), source, language, entity
    # chips, quotes with their speaker.
    card = tab.locator('.card[data-source="desk-order"]').first
    assert "As written at the source: 11:10 GMT" in (
        await card.locator("time").get_attribute("title") or ""
    )
    await expect(card.locator(".source")).to_have_text("desk-order")
    await expect(card.locator(".lang")).to_have_text("EN")
    await expect(card.locator(".chip--place")).to_contain_text(["Berlin"])
    await expect(card.locator(".chip--person").first).to_contain_text("Lavrov")
    await expect(card.locator(".quotes li")).to_contain_text(
        ["We will not accept new sanctions against our economy"]
    )
    await expect(card.locator(".quotes cite")).to_have_text(["Lavrov"])

    # The health strip measured the live ones: a rate and a latency, in this browser.
    await expect(tab.locator("#latency")).to_have_attribute("data-ms", re.compile(r"^\d+$"))
    await expect(tab.locator("#rate")).not_to_have_text("0")
    # This gateway runs alone: source status lives on the poller's port, and the strip says so.
    await expect(tab.locator("#sources-summary")).to_have_text("n/a")
    assert await tab.evaluate("window.sameDocument") is True
    assert errors == []


async def test_filter_narrows_server_side_and_the_url_shares_it(
    stack: Stack, page: PageFixture
) -> None:
    tab, frames, errors = page
    desk = stack.desks["desk-filter"]
    desk.add("f1", "11:20", "Grain corridor talks resumed in Istanbul on Thursday, with "
             "negotiators from both sides meeting for the first time in weeks.")  # fmt: skip
    await tab.goto(stack.url + "/?sources=desk-filter,desk-order")
    mine = tab.locator('.card[data-source="desk-filter"]')
    await expect(mine).to_have_count(2)
    await expect(tab.locator('.card[data-source="desk-order"]')).not_to_have_count(0)

    await expect(tab.locator("#f-sources")).to_have_value("desk-filter, desk-order")
    await tab.fill("#f-sources", "desk-filter")
    await tab.get_by_role("button", name="Apply filters").click()
    await expect(tab).to_have_url(re.compile(r"\?sources=desk-filter$"))
    await expect(tab.locator(".card")).to_have_count(2)
    await expect(tab.locator("#active-list")).to_contain_text("desk-filter")

    # Applied by the gateway: after the new subscription, no other source's event arrived.
    subscribed = next(i for i, (_, f) in enumerate(frames.by_url) if f.get("type") == "subscribed")
    assert frames.by_url[subscribed][1]["filter"] == {"sources": ["desk-filter"]}
    later = [f["event"] for _, f in frames.by_url[subscribed:] if f.get("type") == "event"]
    assert later and {e["data"]["source_id"] for e in later} == {"desk-filter"}

    # Live: the filtered view gets its source's new updates, and only those.
    other = "An update from another desk that this view must not show, about another story."
    stack.desks["desk-order"].add("o9", "11:25", other)
    desk.add("f2", "11:26", "Shipping insurers said premiums for vessels in the Black Sea "
             "fell by a third after the announcement from Istanbul.")  # fmt: skip
    await expect(tab.locator(".card")).to_have_count(3)
    await expect(tab.locator("#wire .card").first).to_contain_text("Shipping insurers")

    # The URL is the view: opened elsewhere, it shows the same updates and fills the form.
    shared = await tab.context.new_page()
    await shared.goto(tab.url)
    await expect(shared.locator(".card")).to_have_count(3)
    await expect(shared.locator("#f-sources")).to_have_value("desk-filter")

    # Words filter from a shared URL, narrowed by the server too.
    await shared.goto(stack.url + "/?terms=grain%20corridor")
    await expect(shared.locator("#f-terms")).to_have_value("grain corridor")
    await expect(shared.locator(".card")).to_have_count(1)
    await expect(shared.locator(".card")).to_contain_text("Grain corridor talks")

    # Back to the whole wire.
    await tab.get_by_role("button", name="Clear").click()
    await expect(tab).to_have_url(stack.url + "/")
    await expect(tab.locator('.card[data-source="desk-order"]')).not_to_have_count(0)
    assert errors == []


async def test_a_revision_edits_the_existing_card(stack: Stack, page: PageFixture) -> None:
    tab, frames, errors = page
    desk = stack.desks["desk-revise"]
    desk.add("r1", "11:30", "Rescue workers said 200 people were evacuated from the flooded "
             "district overnight, and more rain is forecast for the weekend.")  # fmt: skip
    await tab.goto(stack.url + "/?sources=desk-revise")
    card = tab.locator(".card", has_text="Rescue workers")
    await expect(card).to_have_count(1)
    update_id = await card.get_attribute("data-id")
    await card.evaluate("el => { el.dataset.probe = 'the same element' }")

    desk.edit("r1", "Rescue workers said 260 people were evacuated from the flooded "
              "district overnight, and more rain is forecast for the weekend.")  # fmt: skip
    edited = tab.locator(f'.card[data-id="{update_id}"]')
    await expect(edited).to_have_attribute("data-edits", "1")
    # The same card, edited in place: no second card, the element itself kept.
    await expect(edited).to_have_attribute("data-probe", "the same element")
    await expect(tab.locator(".card")).to_have_count(2)
    await expect(edited.locator(".card__text")).to_contain_text("260 people")
    await expect(edited.locator(".badge--edited")).to_have_text("Edited")
    # Its diff is available on demand.
    await expect(edited.locator(".card__diff del")).to_be_hidden()
    await edited.locator(".card__diff summary").click()
    await expect(edited.locator(".card__diff del")).to_contain_text(["200 people"])
    await expect(edited.locator(".card__diff ins")).to_contain_text(["260 people"])

    revised = [e for e in frames.events() if e["type"] == "telex.update.revised"]
    assert [e["data"]["id"] for e in revised] == [update_id]

    # An entry taken down at its source stays on screen, marked, rather than vanishing.
    desk.add("r2", "11:35", "Roads into the district will stay closed until the water "
             "recedes, the regional governor said in a televised address.")  # fmt: skip
    await expect(tab.locator(".card")).to_have_count(3)
    desk.remove("r1")
    await expect(edited).to_have_attribute("data-type", "deleted")
    await expect(edited.locator(".badge--deleted")).to_have_text("Removed at source")
    await expect(tab.locator(".card")).to_have_count(3)
    assert errors == []


async def test_watch_terms_highlight_are_kept_and_the_keyboard_moves(
    stack: Stack, page: PageFixture
) -> None:
    tab, _, errors = page
    desk = stack.desks["desk-watch"]
    await tab.goto(stack.url + "/?sources=desk-watch")
    await expect(tab.locator(".card")).to_have_count(1)
    await tab.fill("#w-terms", "ceasefire, Kherson")
    await tab.get_by_role("button", name="Save watch terms").click()

    desk.add("w1", "12:00", "Both sides agreed to a ceasefire along the front line from "
             "midnight, the mediators said after two days of talks in Geneva.")  # fmt: skip
    card = tab.locator(".card", has_text="Both sides agreed")
    await expect(card).to_have_class(re.compile(r"\bcard--watch\b"))
    await expect(card.locator("mark")).to_have_text(["ceasefire"])
    await expect(card.locator(".badge--watch")).to_have_text("Watch: ceasefire")
    # The one announcement of the wire for screen readers: a watched update arrived.
    await expect(tab.locator("#announcer")).to_contain_text("Watched update from desk-watch")
    await expect(tab.locator(".card--watch")).to_have_count(1)

    # Kept in this browser: after a reload the terms and the highlight are still there.
    await tab.reload()
    await expect(tab.locator("#w-terms")).to_have_value("ceasefire, Kherson")
    await expect(tab.locator(".card--watch")).to_have_count(1)

    # Keyboard: j/k move between updates, / goes to the words filter.
    cards = tab.locator("#wire .card")
    await expect(cards).to_have_count(2)
    await tab.keyboard.press("j")
    await expect(cards.nth(0)).to_be_focused()
    await tab.keyboard.press("j")
    await expect(cards.nth(1)).to_be_focused()
    await tab.keyboard.press("k")
    await expect(cards.nth(0)).to_be_focused()
    await tab.keyboard.press("/")
    await expect(tab.locator("#f-terms")).to_be_focused()

    # Every control has a name a screen reader can say.
    unnamed = await tab.evaluate(UNNAMED_CONTROLS)
    assert unnamed == []
    assert errors == []


async def test_event_text_is_shown_as_text_never_as_markup(stack: Stack, page: PageFixture) -> None:
    tab, _, errors = page
    desk = stack.desks["desk-escape"]
    # Escaped on the source page, so the text of the update itself contains the markup.
    desk.add("x1", "12:10", "Protesters outside the embassy held signs reading "
             "&lt;b&gt;No war&lt;/b&gt; and &lt;img src=x onerror=\"window.pwned=1\"&gt; "
             "while police watched from across the street.")  # fmt: skip
    await tab.goto(stack.url + "/?sources=desk-escape")
    card = tab.locator(".card", has_text="Protesters outside")
    await expect(card).to_have_count(1)
    await expect(card.locator(".card__text")).to_contain_text("<b>No war</b> and <img src=x")
    assert await card.locator(".card__text b, .card__text img").count() == 0
    assert await tab.evaluate("window.pwned") is None
    # The page's policy allows no inline script or foreign asset even if something slipped.
    response = await tab.request.get(stack.url + "/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert errors == []


async def test_older_updates_load_from_history(stack: Stack, page: PageFixture) -> None:
    tab, _, errors = page
    desk = stack.desks["desk-older"]
    # More than the backlog a view starts with; short texts are never linked into stories.
    bulletins = [
        (f"b{i}", f"{6 + i // 60:02d}:{i % 60:02d}", f"Overnight bulletin {i}.") for i in range(120)
    ]
    desk.entries = bulletins + desk.entries
    desk.publish()
    async with asyncio.timeout(30):
        while sum(e["data"]["source_id"] == desk.source_id for e in await wire_events(stack)) < 121:
            await asyncio.sleep(0.3)

    await tab.goto(stack.url + "/?sources=desk-older")
    cards = tab.locator(".card")
    await expect(cards).to_have_count(100)
    await expect(tab.locator("#summary")).to_have_text("This view · 100 updates, newest first")
    older = tab.get_by_role("button", name="Load older updates")
    await older.click()
    await expect(cards).to_have_count(121)
    await expect(older).to_be_hidden()
    times = await tab.locator(".card time").evaluate_all(
        "els => els.map((t) => t.getAttribute('datetime'))"
    )
    assert times == sorted(times, reverse=True) and len(set(times)) == 121
    assert errors == []


async def test_gateway_killed_and_restarted_resumes_with_nothing_missed_or_doubled(
    stack: Stack, page: PageFixture
) -> None:
    tab, frames, errors = page
    desk = stack.desks["desk-resume"]
    status = tab.locator("#status")
    await tab.goto(stack.url + "/?sources=desk-resume")
    await expect(status).to_have_attribute("data-state", "live")
    await expect(tab.locator('.card[data-source="desk-resume"]')).to_have_count(1)

    await stack.kill_gateway()
    await expect(status).to_have_attribute("data-state", "reconnecting")
    await expect(tab.locator("#retry")).to_be_visible()

    # The rest of the pipeline keeps producing while no gateway runs.
    missed = {
        "k1": "Power was restored to most of the eastern region by the evening, the grid "
        "operator said in a statement published on its website.",
        "k2": "Schools in the capital will reopen on Monday after two weeks of closures, "
        "the city council announced at a press conference.",
    }
    for i, (anchor, text) in enumerate(missed.items()):
        desk.add(anchor, f"11:4{i}", text)
    desk.edit("opening", "The desk-resume desk opens its live coverage, corrected.")
    async with asyncio.timeout(30):
        while True:
            seen = [e for e in await wire_events(stack) if e["data"]["source_id"] == desk.source_id]
            if len(seen) >= 4:
                break
            await asyncio.sleep(0.3)
    assert await tab.locator(".card", has_text="Power was restored").count() == 0

    await stack.start_gateway()
    await expect(status).to_have_attribute("data-state", "live", timeout=30_000)
    await expect(status).to_contain_text("resumed: 3 missed updates")
    # The new connection resumed from the cursor instead of asking for a backlog.
    assert len(frames.urls) >= 2
    assert "cursor=" in frames.urls[-1] and "backlog=" not in frames.urls[-1]

    # Nothing missing: every update of the view on the wire has its card...
    for text in missed.values():
        await expect(tab.locator(".card", has_text=text[:30])).to_have_count(1)
    await expect(
        tab.locator('.card[data-source="desk-resume"]', has_text="corrected")
    ).to_have_attribute("data-edits", "1")
    on_wire = {
        e["data"]["id"]
        for e in await wire_events(stack)
        if e["data"]["source_id"] == desk.source_id
    }
    on_screen = await tab.locator(".card").evaluate_all("els => els.map((c) => c.dataset.id)")
    # ...and nothing doubled: one card per update, and no event frame received twice.
    assert sorted(on_screen) == sorted(on_wire)
    received = [e["id"] for e in frames.events()]
    assert len(received) == len(set(received))
    assert await tab.evaluate("window.telex.wire.duplicates") == 0
    assert errors == []


async def test_a_resync_answer_reloads_history(stack: Stack, page: PageFixture) -> None:
    # This test and the next run last: each leaves a gateway configured its own way (here one
    # that replays nothing, so every resume becomes a resync).
    tab, frames, errors = page
    desk = stack.desks["desk-resync"]
    status = tab.locator("#status")
    await tab.goto(stack.url + "/?sources=desk-resync")
    await expect(tab.locator(".card")).to_have_count(1)
    await expect(status).to_have_attribute("data-state", "live")

    await stack.kill_gateway()
    await expect(status).to_have_attribute("data-state", "reconnecting")
    text = "Talks on a prisoner exchange will continue next week in Abu Dhabi, a spokesman said."
    desk.add("y1", "11:50", text)
    async with asyncio.timeout(30):
        while not any(
            e["data"]["text"] == text for e in await wire_events(stack)
        ):  # the update is on the wire, the page has not seen it
            await asyncio.sleep(0.3)
    await stack.start_gateway(TELEX_GATEWAY_MAX_REPLAY_EVENTS="0")

    # The gateway cannot replay: it says so, and the page reloads its history.
    await expect(tab.locator("#alert")).to_contain_text("could not be replayed")
    await expect(status).to_contain_text("history reloaded")
    await expect(tab.locator(".card", has_text="prisoner exchange")).to_have_count(1)
    await expect(tab.locator(".card")).to_have_count(2)
    assert any(f.get("type") == "resync" for _, f in frames.by_url)
    assert errors == []


async def test_a_gateway_that_needs_credentials_gets_them_from_the_viewer(
    stack: Stack, page: PageFixture
) -> None:
    tab, frames, errors = page
    key = "desk-key-0123456789abcdef"
    await stack.kill_gateway()
    await stack.start_gateway(
        TELEX_GATEWAY_ANONYMOUS="false",
        TELEX_GATEWAY_API_KEYS=f'[{{"name": "desk", "key": "{key}"}}]',
    )
    await tab.goto(stack.url + "/?sources=desk-order")
    # Refused before the upgrade: the page says why instead of retrying for ever.
    await expect(tab.locator("#status")).to_contain_text("credentials needed")
    await tab.get_by_label("API key or token").fill(key)
    await tab.get_by_role("button", name="Connect").click()
    await expect(tab.locator("#status")).to_have_attribute("data-state", "live")
    await expect(tab.locator('.card[data-source="desk-order"]')).not_to_have_count(0)
    assert f"token={key}" in frames.urls[-1]
    assert errors == []
