"""The exercises' self-check in headless Chromium: the right answer is "correct", a wrong one "not quite",
for every numeric and every multiple-choice exercise; the tolerance is the stated one; solved exercises
are remembered; the page works in both colour schemes and on a 390 px phone; nothing leaves localhost.

The site is a small one (the exercises page, the home page, the claims page) built with the real
configuration and hooks, so this does not wait for, or depend on, the chapters. Its page of every
exercise loads three times (1.2 MB): once for the tests that only read it or answer on it, once with
the system in the dark scheme (which also serves the remembered answers: fresh storage), once on a
phone. Each kind of check is done once with Playwright's own typing, clicking or tapping, and for
every exercise in one round trip into the page.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import OffsiteGuard, PageWatch, chromium, static_server

pytestmark = pytest.mark.xdist_group("exercise-sites")

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 3}
# Resolves once the transitions running in an element, or under it, have ended (Material's buttons
# fade their colours): colours read after it are the ones that stay. (At most 5 s: an animation that
# never ends must not hang the test.)
TRANSITIONS_DONE = """e => Promise.race([Promise.allSettled(e.getAnimations({subtree: true}).map(a => a.finished)),
                                 new Promise(done => setTimeout(done, 5000))])"""


@pytest.fixture(scope="module")
def server(exercise_site: Path):
    with static_server(exercise_site) as url:
        yield url + "/all/"


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


class Opened(NamedTuple):
    """A page of its own browser context (:func:`_open` closes it), with what goes wrong in it
    (``problems()``)."""
    page: object
    watch: PageWatch
    guard: OffsiteGuard

    def problems(self) -> list[str]:
        return self.watch.problems + self.guard.seen

    def forget_problems(self) -> None:
        self.watch.problems.clear()
        self.guard.seen.clear()


@contextlib.contextmanager
def _open(browser, url: str, **context_options):
    """The page at ``url`` in a context of its own, closed on leaving: every request that leaves
    localhost, console error, page error, failed request and HTTP error is recorded."""
    context = browser.new_context(service_workers="block", **context_options)
    try:
        guard = OffsiteGuard()
        guard.attach(context)
        page = context.new_page()
        guard.page = "/all/"
        watch = PageWatch(page, label="/all/")
        page.goto(url, wait_until="load")
        yield Opened(page, watch, guard)
    finally:
        context.close()


@pytest.fixture(scope="module")
def shared(server: str, browser):
    """One page for the tests to whom what other tests typed or picked there does not matter."""
    with _open(browser, server, color_scheme="light") as opened:
        yield opened


@pytest.fixture
def opened(shared: Opened):
    """The shared page. A test answers for the problems recorded since the previous one ended (the
    first, also for the page's load)."""
    yield shared
    shared.forget_problems()


@pytest.fixture(scope="module")
def shared_dark(server: str, browser):
    with _open(browser, server, color_scheme="dark") as opened:
        yield opened


@pytest.fixture
def dark(shared_dark: Opened):
    """A page of a fresh context whose system prefers the dark scheme. Fresh storage: nothing is
    remembered as solved in it but what its tests answer (the feedback test: ``flow.clip`` only).
    Problems as for ``opened``."""
    yield shared_dark
    shared_dark.forget_problems()


def _feedback_after(page, part, text: str) -> str:
    part.locator("input").fill(text)
    part.locator("button").click()
    return part.locator(".exercise-feedback").inner_text()


def _typed(values) -> str:
    return ", ".join(repr(float(v)) for v in values)


def test_every_exercise_sits_whole_in_the_page(opened: Opened) -> None:
    """Each exercise is inside the article, and its collapsed answer holds the worked solution's code."""
    page = opened.page
    misplaced = page.evaluate("""() => [...document.querySelectorAll('.exercise')]
        .filter(e => !e.closest('article') || !e.querySelector('details .highlight')).map(e => e.id)""")
    assert page.locator(".exercise").count() >= 50
    assert misplaced == []
    assert not opened.problems(), "\n".join(opened.problems())


# Runs in the page: for every part of every numeric exercise, type each case into the box (setting the
# value as typing does), press the button and read the feedback. One round trip instead of hundreds.
EVERY_CASE = """() => {
  const typed = values => values.map(v => String(v)).join(", ");
  const failures = [];
  let parts = 0;
  for (const check of document.querySelectorAll(".exercise-check[data-kind='numeric']")) {
    const id = check.dataset.exercise, rtol = Number(check.dataset.rtol), atol = Number(check.dataset.atol);
    if (check.hidden) { failures.push(id + ": the self-check stayed hidden"); continue; }
    for (const part of check.querySelectorAll(".exercise-part")) {
      parts++;
      const answer = JSON.parse(part.dataset.answer);
      const slack = answer.map(a => atol + rtol * Math.abs(a));
      const cases = [
        ["the answer", typed(answer), "Correct."],
        ["inside the tolerance", typed(answer.map((a, k) => a + 0.9 * slack[k])), "Correct."],
        ["just outside it", typed([answer[0] + 1.2 * slack[0], ...answer.slice(1)]), "Not quite"],
        ["a wrong answer", typed(answer.map((a, k) => a + 10 * slack[k] + 1)), "Not quite"],
        ["a number too few", typed(answer.slice(0, -1)), answer.length > 1 ? "Not quite" : "Type"],
      ];
      for (const [name, text, expected] of cases) {
        part.querySelector("input").value = text;
        part.querySelector("button").click();
        const shown = part.querySelector(".exercise-feedback").textContent;
        if (!shown.startsWith(expected)) failures.push(`${id}, ${name}: typed "${text}", saw "${shown}"`);
      }
    }
  }
  return {failures, parts};
}"""


def test_every_numeric_exercise_accepts_its_answer_and_rejects_a_wrong_one(opened: Opened) -> None:
    page = opened.page
    assert page.locator(".exercise-check[data-kind='numeric']").count() >= 20
    result = page.evaluate(EVERY_CASE)
    assert result["parts"] >= 30
    assert not result["failures"], "\n".join(result["failures"])
    # And once as a reader does it: keystrokes into the box, then Enter.
    part = page.locator("#exercise-walkthrough-hand-backward .exercise-part").first
    part.locator("input").fill("")
    part.locator("input").type(_typed(json.loads(part.get_attribute("data-answer"))))
    part.locator("input").press("Enter")
    assert part.locator(".exercise-feedback").inner_text() == "Correct."
    assert not opened.problems(), "\n".join(opened.problems())


# Runs in the page: each text typed into one part's box, the button pressed, the feedback read.
FEEDBACK_AFTER = """([selector, texts]) => texts.map(text => {
  const part = document.querySelector(selector);
  part.querySelector("input").value = text;
  part.querySelector("button").click();
  return part.querySelector(".exercise-feedback").textContent;
})"""


def test_answers_are_read_as_numbers_not_strings(opened: Opened) -> None:
    texts = ["2, -0.5, 0.75", "[2.0 -.50 7.5e-1]", "2; \u22120.5; 3/4", " 2.000 , -0.5 , 0.75 ", "two, -0.5, 0.75"]
    shown = dict(zip(texts, opened.page.evaluate(FEEDBACK_AFTER, ["#exercise-notation-delta-picks .exercise-part",
                                                                   texts])))
    refused = {text: feedback for text, feedback in shown.items() if text != texts[-1] and feedback != "Correct."}
    assert not refused, refused
    assert shown[texts[-1]].startswith("Type"), shown
    assert not opened.problems(), "\n".join(opened.problems())


# Runs in the page: in every multiple-choice exercise, pick a wrong option, then the right one, as a
# click on the option does, reading the feedback after each; and every option is on screen for a
# reader to click when scrolled to (what Playwright checks before it clicks: shown, and not covered).
EVERY_CHOICE = """() => {
  const failures = [];
  const choices = [...document.querySelectorAll(".exercise-choice[data-kind='choice']")];
  for (const choice of choices) {
    const id = choice.dataset.exercise, right = Number(choice.dataset.answer);
    const radios = [...choice.querySelectorAll("input[type=radio]")];
    if (radios.length < 2) { failures.push(`${id}: ${radios.length} options`); continue; }
    for (const radio of radios) {
      radio.scrollIntoView({block: "center"});
      const box = radio.getBoundingClientRect();
      const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
      const shown = box.width && box.height && radio.checkVisibility({visibilityProperty: true});
      if (!shown || !(hit === radio || radio.closest("label").contains(hit)))
        failures.push(`${id}: option ${radio.value} cannot be clicked: ` +
                      (shown ? `covered by ${hit && hit.outerHTML.slice(0, 80)}` : "not shown"));
    }
    for (const [pick, expected] of [[(right + 1) % radios.length, "Not quite."], [right, "Correct."]]) {
      radios[pick].click();
      const shown = choice.querySelector(".exercise-feedback").textContent;
      if (shown !== expected) failures.push(`${id}: picked option ${pick}, saw "${shown}"`);
    }
  }
  return {failures, choices: choices.length};
}"""


def test_every_choice_answers_at_once(opened: Opened) -> None:
    page = opened.page
    result = page.evaluate(EVERY_CHOICE)
    assert result["choices"] >= 8
    assert not result["failures"], "\n".join(result["failures"])
    # And once as a reader does it: clicks on a wrong option, then on the right one.
    choice = page.locator(".exercise-choice[data-kind='choice']").last
    right = int(choice.get_attribute("data-answer"))
    radios = choice.locator("input[type=radio]")
    radios.nth((right + 1) % radios.count()).check()
    assert choice.locator(".exercise-feedback").inner_text() == "Not quite."
    radios.nth(right).check()
    assert choice.locator(".exercise-feedback").inner_text() == "Correct."
    assert not opened.problems(), "\n".join(opened.problems())


def test_solved_exercises_are_remembered_in_this_browser(dark: Opened) -> None:
    page = dark.page
    exercise = page.locator("#exercise-attention-it-weights")
    part = exercise.locator(".exercise-part")
    assert exercise.locator(".exercise-solved").is_hidden()
    _feedback_after(page, part, _typed(json.loads(part.get_attribute("data-answer"))))
    page.reload(wait_until="load")
    assert page.locator("#exercise-attention-it-weights .exercise-solved").is_visible()
    assert page.locator("#exercise-attention-value-gradient .exercise-solved").is_hidden()
    assert not dark.problems(), "\n".join(dark.problems())


def _contrast(rgb_a: str, rgb_b: str) -> float:
    def luminance(rgb: str) -> float:
        channels = [int(c) / 255 for c in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(rgb_a), luminance(rgb_b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_feedback_is_readable_in_both_colour_schemes(request, scheme: str) -> None:
    opened = request.getfixturevalue("opened" if scheme == "light" else "dark")
    page = opened.page
    chosen = page.evaluate("document.body.getAttribute('data-md-color-scheme')")
    assert chosen == ("slate" if scheme == "dark" else "default"), chosen
    part = page.locator("#exercise-flow-clip .exercise-part")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    for text, kind in ((_typed(json.loads(part.get_attribute("data-answer"))), "correct"), ("9, 9", "wrong")):
        _feedback_after(page, part, text)
        part.evaluate(TRANSITIONS_DONE)
        color = part.locator(f".exercise-{kind}").evaluate("e => getComputedStyle(e).color")
        assert _contrast(color, background) >= 4.5, (scheme, kind, color, background)
    field, button = part.locator("input"), part.locator("button")
    assert _contrast(field.evaluate("e => getComputedStyle(e).color"),
                     field.evaluate("e => getComputedStyle(e).backgroundColor")) >= 4.5
    button_background = button.evaluate("e => getComputedStyle(e).backgroundColor")  # filled while focused
    behind = background if button_background in ("rgba(0, 0, 0, 0)", "transparent") else button_background
    assert _contrast(button.evaluate("e => getComputedStyle(e).color"), behind) >= 4.5, (scheme, behind)
    page.mouse.move(0, 0)
    button.evaluate("e => e.blur()")
    button.evaluate(TRANSITIONS_DONE)  # Material's buttons fade their colours
    assert _contrast(button.evaluate("e => getComputedStyle(e).color"), background) >= 4.5, scheme
    assert not opened.problems(), "\n".join(opened.problems())


def test_a_phone_can_use_every_exercise(server: str, browser) -> None:
    with _open(browser, server, **PHONE) as phone:
        page = phone.page
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
        too_wide = page.evaluate("""() => [...document.querySelectorAll('.exercise input, .exercise button')]
            .filter(e => { const r = e.getBoundingClientRect(); return r.left < 0 || r.right > window.innerWidth; })
            .map(e => e.closest('.exercise').id)""")
        assert not too_wide, too_wide
        part = page.locator("#exercise-transformer-loss-gradient .exercise-part")
        part.locator("input").tap()
        assert _feedback_after(page, part, _typed(json.loads(part.get_attribute("data-answer")))) == "Correct."
    assert not phone.problems(), "\n".join(phone.problems())
