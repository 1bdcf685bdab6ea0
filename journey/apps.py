from django.apps import AppConfig


class JourneyConfig(AppConfig):
    name = "journey"
    verbose_name = "Journeys"

    def ready(self) -> None:
        from journey import checks  # noqa: F401 (registers the system checks)
