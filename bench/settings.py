"""The benchmark's settings: production's, with two additions.

``bench.run`` sets the production environment (MILEPOST_ENV=production, PostgreSQL,
Redis, DEBUG off, the manifest static storage) before this module is imported, so what is
measured is what a deployment runs. The additions:

* the URLconf gains ``/bench/floor/``, the minimal view the journey page is compared with;
* mail goes to ``bench.mail.StampBackend``, which notes when each message was handed over
  (time to know) instead of opening an SMTP connection.
"""

import os

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
MAILERS = {
    "default": {
        "BACKEND": "bench.mail.StampBackend",
        "OPTIONS": {"path": os.environ.get("BENCH_MAIL_LOG", "artifacts/bench/mail.log")},
    }
}
