"""The WSGI application (gunicorn, granian, runserver), and its process's garbage collector.

A partner's batch of a hundred events makes several hundred thousand Python objects
(model instances, rows, dicts), many in reference cycles. With Python's default
thresholds the collector ran about six times per batch and, now and then, a full
collection over every object the process holds, most of them made at startup (Django,
the apps, the URLconf) and never garbage: 6.5 ms per batch, a twelfth of the worker's
CPU (gc.callbacks, 20 moving batches, docs/performance.md). Freezing what startup made
keeps it out of every collection (the use ``gc.freeze`` is documented for), and a higher
first threshold makes collections rare: 1.1 ms per batch. The cost is memory: cycles
wait longer to be freed, at most some 50,000 container objects (a few MB) per process.
"""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

# Every view, serializer and form imported now (the first request would), so that they
# are frozen with the rest of what startup made.
get_resolver().url_patterns  # noqa: B018
gc.freeze()
gc.set_threshold(50_000, 20, 20)
