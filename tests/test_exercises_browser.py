"""The exercises' self-check in headless Chromium: the right answer is "correct", a wrong one "not quite",
for every numeric and every multiple-choice exercise; the tolerance is the stated one; solved exercises
are remembered; the page works in both colour schemes and on a 390 px phone; nothing leaves localhost.

The site is a small one (the exercises page, the home page, the claims page) built with the real
configuration and hooks, so this does not wait for, or depend on, the chapters.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import DOCS, chromium, mkdocs_build, static_server, write_config

pytestmark = pytest.mark.xdist_group("exercise-sites")

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def exercise_site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exercise-site")
    docs = root / "docs"
    (docs / "assets").mkdir(parents=True)
    (docs / "index.md").write_text("# Home\n\nSee [the exercises](exercises.md).\n")
    for name in ("exercises.md", "claims.md", "derivations.md", "assets/site.css", "assets/exercises.js"):
        shutil.copy(DOCS / name, docs / name)
    # Every exercise on one page of this small site (the real site has a page per chapter).
    markers = [line for page in sorted((DOCS / "questions").glob("*.md"))
               for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("[[exercise:")]
    (docs / "all.md").write_text("# All exercises\n\n" + "\n\n".join(markers) + "\n")
    config = write_config(root, docs, nav=None, extra_css=["assets/katex/katex.min.css", "assets/site.css"])
    result = mkdocs_build(root / "site", config)
    if result.returncode != 0:
        pytest.fail(f"the exercise site did not build:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return root / "site"


@pytest.fixture(scope="module")
def server(exercise_site: Path):
    with static_server(exercise_site) as url:
        yield url + "/all/"


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def _open(browser, url: str, **context_options):
    """A page at ``url`` whose every request that leaves localhost, console error or page error is recorded."""
    context = browser.new_context(**context_options)
    page = context.new_page()
    problems: list[str] = []

    def route(route_, request):
        if urlparse(request.url).hostname not in LOCAL_HOSTS and not request.url.startswith(("data:", "blob:")):
            problems.append(f"request leaving localhost: {request.url}")
            return route_.abort()
        return route_.continue_()

    page.route("**/*", route)
    page.on("console", lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda req: problems.append(f"failed: {req.url} {req.failure}"))
    page.goto(url, wait_until="networkidle")
    return context, page, problems


def _feedback_after(page, part, text: str) -> str:
    part.locator("input").fill(text)
    part.locator("button").click()
    return part.locator(".exercise-feedback").inner_text()


def _typed(values) -> str:
    return ", ".join(repr(float(v)) for v in values)


def test_every_exercise_sits_whole_in_the_page(server: str, browser) -> None:
    """Each exercise is inside the article, and its collapsed answer holds the worked solution's code."""
    context, page, problems = _open(browser, server)
    misplaced = page.evaluate("""() => [...document.querySelectorAll('.exercise')]
        .filter(e => !e.closest('article') || !e.querySelector('details .highlight')).map(e => e.id)""")
    assert page.locator(".exercise").count() >= 50
    assert misplaced == []
    assert not problems, "\n".join(problems)
    context.close()


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


def test_every_numeric_exercise_accepts_its_answer_and_rejects_a_wrong_one(server: str, browser) -> None:
    context, page, problems = _open(browser, server)
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
    assert not problems, "\n".join(problems)
    context.close()


def test_answers_are_read_as_numbers_not_strings(server: str, browser) -> None:
    context, page, problems = _open(browser, server)
    part = page.locator("#exercise-notation-delta-picks .exercise-part")
    for text in ("2, -0.5, 0.75", "[2.0 -.50 7.5e-1]", "2; \u22120.5; 3/4", " 2.000 , -0.5 , 0.75 "):
        assert _feedback_after(page, part, text) == "Correct.", text
    assert _feedback_after(page, part, "two, -0.5, 0.75").startswith("Type")
    assert not problems, "\n".join(problems)
    context.close()


def test_every_choice_answers_at_once(server: str, browser) -> None:
    context, page, problems = _open(browser, server)
    choices = page.locator(".exercise-choice[data-kind='choice']")
    assert choices.count() >= 8
    for index in range(choices.count()):
        choice = choices.nth(index)
        right = int(choice.get_attribute("data-answer"))
        radios = choice.locator("input[type=radio]")
        assert radios.count() >= 2
        wrong = (right + 1) % radios.count()
        radios.nth(wrong).check()
        assert choice.locator(".exercise-feedback").inner_text() == "Not quite."
        radios.nth(right).check()
        assert choice.locator(".exercise-feedback").inner_text() == "Correct."
    assert not problems, "\n".join(problems)
    context.close()


def test_solved_exercises_are_remembered_in_this_browser(server: str, browser) -> None:
    context, page, problems = _open(browser, server)
    exercise = page.locator("#exercise-attention-it-weights")
    part = exercise.locator(".exercise-part")
    assert exercise.locator(".exercise-solved").is_hidden()
    _feedback_after(page, part, _typed(json.loads(part.get_attribute("data-answer"))))
    page.reload(wait_until="networkidle")
    assert page.locator("#exercise-attention-it-weights .exercise-solved").is_visible()
    assert page.locator("#exercise-attention-value-gradient .exercise-solved").is_hidden()
    assert not problems, "\n".join(problems)
    context.close()


def _contrast(rgb_a: str, rgb_b: str) -> float:
    def luminance(rgb: str) -> float:
        channels = [int(c) / 255 for c in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(rgb_a), luminance(rgb_b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_feedback_is_readable_in_both_colour_schemes(server: str, browser, scheme: str) -> None:
    context, page, problems = _open(browser, server, color_scheme=scheme)
    assert page.evaluate("document.body.getAttribute('data-md-color-scheme')") == ("slate" if scheme == "dark" else "default")
    part = page.locator("#exercise-flow-clip .exercise-part")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    for text, kind in ((_typed(json.loads(part.get_attribute("data-answer"))), "correct"), ("9, 9", "wrong")):
        _feedback_after(page, part, text)
        page.wait_for_timeout(600)
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
    page.wait_for_timeout(600)  # Material's buttons fade their colours
    assert _contrast(button.evaluate("e => getComputedStyle(e).color"), background) >= 4.5, scheme
    assert not problems, "\n".join(problems)
    context.close()


def test_a_phone_can_use_every_exercise(server: str, browser) -> None:
    context, page, problems = _open(browser, server, viewport={"width": 390, "height": 844}, is_mobile=True,
                                    has_touch=True, device_scale_factor=3)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
    too_wide = page.evaluate("""() => [...document.querySelectorAll('.exercise input, .exercise button')]
        .filter(e => { const r = e.getBoundingClientRect(); return r.left < 0 || r.right > window.innerWidth; })
        .map(e => e.closest('.exercise').id)""")
    assert not too_wide, too_wide
    part = page.locator("#exercise-transformer-loss-gradient .exercise-part")
    part.locator("input").tap()
    assert _feedback_after(page, part, _typed(json.loads(part.get_attribute("data-answer")))) == "Correct."
    assert not problems, "\n".join(problems)
    context.close()
