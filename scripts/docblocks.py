"""The Python blocks of the pages, as markdown-exec sees them, for the tests.

A fence opens with three or more backticks (or tildes), possibly indented inside
an admonition or a content tab, and closes with the same fence at the same
indentation. A block is *executable* when its info string is ``python`` with
``exec="on"``, *exempt* when it carries ``norun="why"``, and any other Python
block is an error: every block on the site either runs or says why not.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")


@dataclass(frozen=True)
class Block:
    page: str  # docs-relative path
    line: int  # 1-based line of the first line of code
    language: str
    options: dict[str, str]
    code: str

    @property
    def executable(self) -> bool:
        return self.language == "python" and self.options.get("exec") in {"on", "1", "true"}

    @property
    def norun(self) -> str | None:
        return self.options.get("norun")

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def parse_info(info: str) -> tuple[str, dict[str, str]]:
    """``python exec="on" session="x"`` -> ``("python", {"exec": "on", "session": "x"})``."""
    words = shlex.split(info.strip().lstrip("{").rstrip("}"))
    if not words:
        return "", {}
    language, options = words[0].lstrip("."), {}
    for word in words[1:]:
        key, _, value = word.partition("=")
        options[key] = value
    return language, options


def blocks(path: Path, docs: Path) -> list[Block]:
    """Every fenced block of the Markdown file ``path``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = OPENING.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        closing = re.compile(rf"^{re.escape(indent)}{fence[0]}{{{len(fence)},}}[ \t]*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[index + 1 : end]]
        language, options = parse_info(opening.group("info"))
        found.append(Block(path.relative_to(docs).as_posix(), index + 2, language, options, "\n".join(body) + "\n"))
        index = end + 1
    return found


MARKDOWN_LINK = re.compile(r"\]\((?!https?:)[^)\s]*\)")


def links_in_output(block: Block, output: str) -> list[str]:
    """Markdown links in what a hidden block printed.

    markdown-exec renders printed Markdown outside MkDocs' link handling: a link to
    ``page.md`` stays ``page.md`` and an anchor gets markdown-exec's id prefix, so both
    break. Links belong in the page's own prose.
    """
    if block.options.get("result") or block.options.get("html"):
        return []
    return MARKDOWN_LINK.findall(output)
