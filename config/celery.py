"""The Celery app. Tasks run in-process when no broker is configured (see settings)."""

import os
from typing import Any

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("milepost", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_old_connections_between_tasks(task: Task | None = None, **kwargs: Any) -> None:
    """Between a worker's tasks, what Django does between requests: a connection older
    than CONN_MAX_AGE, or left unusable, is closed; any other is kept, and checked before
    its next use (CONN_HEALTH_CHECKS). Not for a task run eagerly, inside its caller's
    request and maybe its transaction (settings: CELERY_DB_REUSE_MAX)."""
    if task is None or getattr(task.request, "is_eager", False):
        return
    close_old_connections()
