"""Partner.mappings_version, and the triggers that move it on every change to a
partner's status mappings.

Each partner event reads its partner's mappings; a process keeps them, once read, under
this version (integrations.services.partner_mappings), which the API key's read brings
with the partner at every request: one statement fewer per event. Triggers, not
application code, as the journey version's (journey migration 0008): the admin, bulk
updates and raw SQL are covered alike. A BEFORE UPDATE trigger on the partner itself
moves the version on at any update of the row, so a save of a copy read before a
mapping changed cannot move it back to a version a process holds older mappings under.

SQLite makes a table again to change some columns, without its triggers: a later
migration that does so to integrations_statusmapping or integrations_partner must drop
these first and make them again after (``forwards`` and ``backwards`` here), as
journey.migration_ops.keep_version_triggers does for the journey's; the test suite checks
that they are all there after every migration.
"""

from django.db import migrations, models

PARTNER = "integrations_partner"
MAPPING = "integrations_statusmapping"
EVENTS = {"INSERT": ["new"], "UPDATE": ["old", "new"], "DELETE": ["old"]}
SELF = "mp_mappings_version_partner_self"


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
            f"CREATE OR REPLACE FUNCTION {SELF}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN NEW.mappings_version := OLD.mappings_version + 1; RETURN NEW; END $$;",
            f"DROP TRIGGER IF EXISTS {SELF} ON {PARTNER};",
            f"CREATE TRIGGER {SELF} BEFORE UPDATE ON {PARTNER} "
            f"FOR EACH ROW EXECUTE FUNCTION {SELF}();",
        ]
        for event, sides in EVENTS.items():
            name = f"mp_mappings_version_{event.lower()}"
            returned = "OLD" if event == "DELETE" else "NEW"
            statements += [
                # The self trigger moves it on: any update of the row will do.
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
            f"UPDATE {PARTNER} SET mappings_version = OLD.mappings_version + 1 "
            "WHERE id = NEW.id; END;",
        ]
        for event, sides in EVENTS.items():
            name = f"mp_mappings_version_{event.lower()}"
            statements += [
                f"DROP TRIGGER IF EXISTS {name};",
                f"CREATE TRIGGER {name} AFTER {event} ON {MAPPING} FOR EACH ROW BEGIN "
                f"UPDATE {PARTNER} SET mappings_version = mappings_version + 1 "
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
