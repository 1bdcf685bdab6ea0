"""A mail backend for the benchmark: each message handed over is noted, with the time.

One line per message, ``<unix time> <recipient>``, appended to the file named in the
mailer's OPTIONS (``path``). Appends of one short line are atomic, so several worker
processes can share the file.
"""

import os
import time
from collections.abc import Sequence

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend


class StampBackend(BaseEmailBackend):
    def __init__(self, *args: object, path: str = "", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.path = os.path.abspath(path or "artifacts/bench/mail.log")

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        stamp = time.time()
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        lines = "".join(f"{stamp:.6f} {m.to[0]}\n" for m in email_messages if m.to)
        with open(self.path, "a", encoding="utf-8") as log:
            log.write(lines)
        return len(email_messages)
