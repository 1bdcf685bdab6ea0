"""The Spanish catalogue is complete, and the committed .mo is compiled from the .po."""

import ast
import gettext
from pathlib import Path

LOCALE = Path(__file__).resolve().parents[1] / "locale" / "es" / "LC_MESSAGES"


def entries() -> list[tuple[str, str, str, bool]]:
    """(msgctxt, msgid, msgstr, fuzzy) for each entry of the .po, header excluded."""
    found = []
    for block in (LOCALE / "django.po").read_text().split("\n\n"):
        lines = block.splitlines()
        fuzzy = any(line.startswith("#,") and "fuzzy" in line for line in lines)
        parts: dict[str, list[str]] = {"msgctxt": [], "msgid": [], "msgstr": []}
        current = None
        for line in lines:
            if line.startswith(("msgctxt ", "msgid ", "msgstr ")):
                current, _space, rest = line.partition(" ")
                parts[current].append(ast.literal_eval(rest))
            elif line.startswith('"') and current:
                parts[current].append(ast.literal_eval(line))
        context = "".join(parts["msgctxt"])
        msgid, msgstr = "".join(parts["msgid"]), "".join(parts["msgstr"])
        if msgid:
            found.append((context, msgid, msgstr, fuzzy))
    return found


def test_every_string_is_translated_and_none_is_fuzzy():
    catalogue = entries()
    assert len(catalogue) > 100
    assert [msgid for _context, msgid, msgstr, fuzzy in catalogue if not msgstr or fuzzy] == []


def test_the_committed_mo_matches_the_po():
    with (LOCALE / "django.mo").open("rb") as compiled:
        translations = gettext.GNUTranslations(compiled)
    stale = [
        msgid
        for context, msgid, msgstr, _fuzzy in entries()
        if (translations.pgettext(context, msgid) if context else translations.gettext(msgid))
        != msgstr
    ]
    assert stale == []
