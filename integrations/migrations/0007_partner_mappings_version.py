"""Partner.mappings_version, and the triggers that give it a new value at every change to
a partner's status mappings.

Each partner event reads its partner's mappings; a process keeps them, once read, under
this version (integrations.services.partner_mappings), which the API key's read brings
with the partner at every request: one statement fewer per event. Triggers, not
application code, as the journey version's (journey migration 0008): the admin, bulk
updates and raw SQL are covered alike. The value is new at any update of the partner's
row (a trigger on the row itself, which the mappings' triggers set off), never one used
before: from a sequence on PostgreSQL, whose values a rolled-back transaction does not
give back, and 63 random bits on SQLite. So a save of a copy read before a change cannot
bring back a version a process holds older mappings under, and neither can a
transaction that read its own uncommitted mappings under a version and rolled back.

SQLite makes a table again to change some columns, without its triggers: a later
migration that does so to integrations_statusmapping or integrations_partner must drop
these first and make them again after (``forwards`` and ``backwards`` here), as
journey.migration_ops.keep_version_triggers does for the journey's; the test suite checks
that they are all there once every migration has run.
"""

from django.db import migrations, models

PARTNER = "integrations_partner"
MAPPING = "integrations_statusmapping"
EVENTS = {"INSERT": ["new"], "UPDATE": ["old", "new"], "DELETE": ["old"]}
SELF = "mp_mappings_version_partner_self"
SEQUENCE = "mp_mappings_version_seq"


def trigger_names() -> dict[str, str]:
    """Trigger name -> its table."""
    return {SELF: PARTNER} | {
        f"mp_mappings_version_{event.lower()}": MAPPING for event in EVENTS
    }


def _partners(sides: list[str]) -> str:
    return ", ".join(f"{side.upper()}.partner_id" for side in sides)


def forwards(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    statements = []
    if vendor == "postgresql":
        statements += [
            f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE};",
            f"CREATE OR REPLACE FUNCTION {SELF}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN NEW.mappings_version := nextval('{SEQUENCE}'); RETURN NEW; END $$;",
            f"DROP TRIGGER IF EXISTS {SELF} ON {PARTNER};",
            f"CREATE TRIGGER {SELF} BEFORE UPDATE ON {PARTNER} "
            f"FOR EACH ROW EXECUTE FUNCTION {SELF}();",
        ]
        for event, sides in EVENTS.items():
            name = f"mp_mappings_version_{event.lower()}"
            returned = "OLD" if event == "DELETE" else "NEW"
            statements += [
                # The self trigger gives it its new value: any update of the row will do.
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN UPDATE {PARTNER} SET mappings_version = mappings_version "
                f"WHERE id IN ({_partners(sides)}); RETURN {returned}; END $$;",
                f"DROP TRIGGER IF EXISTS {name} ON {MAPPING};",
                f"CREATE TRIGGER {name} AFTER {event} ON {MAPPING} "
                f"FOR EACH ROW EXECUTE FUNCTION {name}();",
            ]
    elif vendor == "sqlite":
        statements += [
            f"DROP TRIGGER IF EXISTS {SELF};",
            # Recursive triggers are off in SQLite: this UPDATE does not fire itself again.
            f"CREATE TRIGGER {SELF} AFTER UPDATE ON {PARTNER} FOR EACH ROW BEGIN "
            f"UPDATE {PARTNER} SET mappings_version = (random() & 9223372036854775807) "
            "WHERE id = NEW.id; END;",
        ]
        for event, sides in EVENTS.items():
            name = f"mp_mappings_version_{event.lower()}"
            statements += [
                f"DROP TRIGGER IF EXISTS {name};",
                # The self trigger gives it its new value: any update of the row will do.
                f"CREATE TRIGGER {name} AFTER {event} ON {MAPPING} FOR EACH ROW BEGIN "
                f"UPDATE {PARTNER} SET mappings_version = mappings_version "
                f"WHERE id IN ({_partners(sides)}); END;",
            ]
    else:
        raise NotImplementedError(f"No mappings version triggers for {vendor}.")
    for statement in statements:
        schema_editor.execute(statement)


def backwards(apps, schema_editor) -> None:
    postgresql = schema_editor.connection.vendor == "postgresql"
    for name, table in trigger_names().items():
        if postgresql:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table};")
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {name}();")
        else:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name};")
    if postgresql:
        schema_editor.execute(f"DROP SEQUENCE IF EXISTS {SEQUENCE};")


class Migration(migrations.Migration):
    dependencies = [("integrations", "0006_mapping_code_help")]

    operations = [
        migrations.AddField(
            model_name="partner",
            name="mappings_version",
            field=models.PositiveBigIntegerField(default=0, editable=False),
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
