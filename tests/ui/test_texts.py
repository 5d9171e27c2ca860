"""Every text of the web UI exists in English and German, and every key the pages use is
defined (a missing one would show its key on the page)."""

from __future__ import annotations

import re
from pathlib import Path

UI = Path(__file__).resolve().parents[2] / "src" / "chargebrain" / "ui"


def _keys(block: str) -> set[str]:
    return set(re.findall(r"(?:^|[{,])\s*(\w+): '", block, re.M))


def _block(text: str, name: str) -> str:
    start = text.index(f"const {name} = {{")
    return text[start:text.index("\n};", start)]


def test_english_and_german_have_the_same_keys() -> None:
    text = (UI / "i18n.js").read_text(encoding="utf-8")
    en, de = _keys(_block(text, "EN")), _keys(_block(text, "DE"))
    assert len(en) > 150
    assert en == de


def test_every_key_used_is_defined() -> None:
    text = (UI / "i18n.js").read_text(encoding="utf-8")
    en = _keys(_block(text, "EN"))
    used: set[str] = set()
    for path in UI.glob("*.js"):
        if path.name != "i18n.js":
            used |= set(re.findall(r"\bt\('(\w+)'", path.read_text(encoding="utf-8")))
    assert used - en == set()
