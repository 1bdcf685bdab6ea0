"""The Spanish catalogue is complete, and the committed .mo is compiled from the .po."""

import ast
import gettext
from pathlib import Path

LOCALE = Path(__file__).resolve().parents[1] / "locale" / "es" / "LC_MESSAGES"
KEYWORDS = ("msgctxt", "msgid", "msgid_plural", "msgstr", "msgstr[0]", "msgstr[1]")


def entries() -> list[tuple[str, str, str, list[str], bool]]:
    """(msgctxt, msgid, msgid_plural, translations, fuzzy) for each entry, header excluded.

    translations is [msgstr] for a singular entry and [msgstr[0], msgstr[1]] for a plural one
    (Spanish has two plural forms, like English).
    """
    found = []
    for block in (LOCALE / "django.po").read_text().split("\n\n"):
        lines = block.splitlines()
        fuzzy = any(line.startswith("#,") and "fuzzy" in line for line in lines)
        parts: dict[str, list[str]] = {keyword: [] for keyword in KEYWORDS}
        current = None
        for line in lines:
            keyword, _space, rest = line.partition(" ")
            if keyword in KEYWORDS and rest.startswith('"'):
                current = keyword
                parts[current].append(ast.literal_eval(rest))
            elif line.startswith('"') and current:
                parts[current].append(ast.literal_eval(line))
        context, msgid, plural = (
            "".join(parts[key]) for key in ("msgctxt", "msgid", "msgid_plural")
        )
        if plural:
            translations = ["".join(parts["msgstr[0]"]), "".join(parts["msgstr[1]"])]
        else:
            translations = ["".join(parts["msgstr"])]
        if msgid:
            found.append((context, msgid, plural, translations, fuzzy))
    return found


def test_every_string_is_translated_and_none_is_fuzzy():
    catalogue = entries()
    assert len(catalogue) > 100
    assert any(plural for _context, _msgid, plural, _translations, _fuzzy in catalogue)
    assert [
        msgid
        for _context, msgid, _plural, translations, fuzzy in catalogue
        if not all(translations) or fuzzy
    ] == []


def test_the_committed_mo_matches_the_po():
    with (LOCALE / "django.mo").open("rb") as compiled:
        translations = gettext.GNUTranslations(compiled)
    stale = []
    for context, msgid, plural, expected, _fuzzy in entries():
        if plural:
            # n=1 picks form 0 and n=2 picks form 1 under "plural=(n != 1)".
            found = [
                translations.npgettext(context, msgid, plural, n)
                if context
                else translations.ngettext(msgid, plural, n)
                for n in (1, 2)
            ]
        else:
            found = [
                translations.pgettext(context, msgid) if context else translations.gettext(msgid)
            ]
        if found != expected:
            stale.append(msgid)
    assert stale == []


def _house_style():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "locale" / "en" / "house_style.py"
    spec = importlib.util.spec_from_file_location("house_style", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_english_house_style_catalogue_is_current_and_compiled():
    """Written from the installed django-allauth's strings: after an upgrade, run
    locale/en/house_style.py again (its docstring says how)."""
    house_style = _house_style()
    assert house_style.PO.read_text() == house_style.catalogue()
    with (house_style.PO.parent / "django.mo").open("rb") as compiled:
        translations = gettext.GNUTranslations(compiled)
    assert translations.gettext("Remember Me") == "Remember me"
    assert translations.gettext("Sign In") == "Sign in"
    # Every word chosen by hand is in the catalogue, as chosen.
    for msgid, chosen in house_style.CHOSEN.items():
        assert translations.gettext(msgid) == chosen
    assert house_style.sentence_case("Enter Sign-In Code") == "Enter sign-in code"
    assert house_style.sentence_case("Provider ID") == "Provider ID"
