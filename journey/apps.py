from django.apps import AppConfig


class JourneyConfig(AppConfig):
    name = "journey"
    verbose_name = "Journeys"

    def ready(self) -> None:
        from django.db.models import Field, ForeignObject

        from journey import checks  # noqa: F401 (registers the system checks)
        from journey.compiled import OneOf

        # On relations too: their lookups are their own, not Field's.
        Field.register_lookup(OneOf)
        ForeignObject.register_lookup(OneOf)
