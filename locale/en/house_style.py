"""Write locale/en/LC_MESSAGES/django.po: django-allauth's page words in the portal's
house style. allauth writes its titles and buttons in Title Case ("Sign In", "Forgot
Password?", "Remember Me"); the portal writes sentences ("Log out", "Save your
details"). Django prefers the project's catalogues (LOCALE_PATHS) to an app's, so an
English catalogue of allauth's Title Case strings, each in sentence case, changes its
pages without copying its templates. Spanish needs none: allauth's Spanish is already
in sentence case.

Run it again after upgrading django-allauth (tests/test_locale.py fails until then if a
page's words changed), from the project's root:

    .venv/bin/python locale/en/house_style.py && msgfmt --check \
        -o locale/en/LC_MESSAGES/django.mo locale/en/LC_MESSAGES/django.po
"""

import gettext
import json
import re
from pathlib import Path

import allauth

# Where sentence case is not enough: nouns that take a hyphen, and "via" as the portal
# would say it. allauth's verb stays: "Sign in", "Sign out", as its sentences say.
CHOSEN = {
    "Passkey Sign Up": "Passkey sign-up",
    "Sign In Via %(provider)s": "Sign in with %(provider)s",
    "Sign Up Closed": "Sign-up closed",
}
# Words that stay capitalised inside a sentence.
KEEP = {"ID", "OpenID", "TOTP", "URL"}
WORD = re.compile(r"[A-Za-z][A-Za-z-]*")


PLACEHOLDER = re.compile(r"%\(\w+\)s|%s")


def title_case(text: str) -> bool:
    """Two words or more, and every word after the first capitalised (placeholders,
    "%(provider)s", are not words)."""
    words = WORD.findall(PLACEHOLDER.sub("", text))
    return len(words) > 1 and all(w[0].isupper() for w in words[1:])


def sentence_case(text: str) -> str:
    first = True

    def lower(match: re.Match[str]) -> str:
        nonlocal first
        word = match.group(0)
        if word in KEEP or word.isupper():
            first = False
            return word
        if first:
            # "Sign-In code": the first word's first part keeps its capital.
            first = False
            head, _sep, rest = word.partition("-")
            return f"{head}-{rest.lower()}" if rest else word
        return word.lower()

    return WORD.sub(lower, text)


def quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def catalogue() -> str:
    """The catalogue's text, as the committed file should read."""
    # allauth's Spanish catalogue lists every string its pages translate.
    source = Path(allauth.__file__).parent / "locale" / "es" / "LC_MESSAGES" / "django.mo"
    with source.open("rb") as compiled:
        keys = gettext.GNUTranslations(compiled)._catalog
    lines = [
        "# django-allauth's Title Case words in the portal's sentence case.",
        "# Written by locale/en/house_style.py: edit that, not this file.",
        'msgid ""',
        'msgstr ""',
        '"Project-Id-Version: Milepost\\n"',
        '"PO-Revision-Date: 2026-12-06 01:00+0000\\n"',
        '"Last-Translator: Milepost engineers <engineers@milepost.example>\\n"',
        '"Language-Team: English <engineers@milepost.example>\\n"',
        '"Language: en\\n"',
        '"MIME-Version: 1.0\\n"',
        '"Content-Type: text/plain; charset=UTF-8\\n"',
        '"Content-Transfer-Encoding: 8bit\\n"',
        '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"',
        "",
    ]
    for key in sorted(k for k in keys if isinstance(k, str) and k):
        context, _sep, msgid = key.rpartition("\x04")
        if not title_case(msgid):
            continue
        if context:
            lines.append(f"msgctxt {quoted(context)}")
        lines += [
            f"msgid {quoted(msgid)}",
            f"msgstr {quoted(CHOSEN.get(msgid, sentence_case(msgid)))}",
            "",
        ]
    return "\n".join(lines)


PO = Path(__file__).parent / "LC_MESSAGES" / "django.po"


def main() -> None:
    PO.write_text(catalogue())


if __name__ == "__main__":
    main()
