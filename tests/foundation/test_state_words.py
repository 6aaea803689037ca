"""The README's state-word tables are core/words.py, word for word."""

from __future__ import annotations

from pathlib import Path

from rollgate.core.words import GLYPHS, WORDS

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_lists_every_state_word_with_its_glyph_and_meaning() -> None:
    text = README.read_text()
    section = text.split("## State words", 1)[1].split("\n## ", 1)[0]
    rows = {line for line in section.splitlines() if line.startswith("| `")}
    wanted = {
        f"| `{word}` | {GLYPHS.get(word, '')} | {meaning} |"
        for words in WORDS.values()
        for word, meaning in words.items()
    }
    assert rows == wanted
