"""Journey.version, and the triggers that move it on every change the journey page shows.

Triggers, not application code: admin edits, bulk updates, raw SQL and every service are
covered alike, so a cached page can never outlive what it shows (journey/page_cache.py).

PostgreSQL: statement-level triggers with transition tables (one UPDATE of the journeys
per statement, however many rows it wrote), and a BEFORE UPDATE trigger on the journey
row itself that always moves the version on (a save with a stale in-memory version
cannot move it back). SQLite (the embedded default): row-level triggers doing the same.
"""

from django.db import migrations, models

JOURNEY = "journey_journey"

# table -> (its column naming the owner row, how that maps to journey ids or None when
# the column is the journey itself); {ids} is a subquery of the column's values.
CHILDREN = {
    "journey_milestone": ("journey_id", None),
    "journey_photo": ("journey_id", None),
    "journey_shipmentleg": ("journey_id", None),
    "journey_customertask": ("journey_id", None),
    "journey_promiseditem": ("journey_id", None),
    "journey_appointment": ("journey_id", None),
    "journey_message": ("journey_id", None),
    "journey_etaestimate": ("journey_id", None),
    "journey_checkpoint": (
        "leg_id",
        "SELECT journey_id FROM journey_shipmentleg WHERE id IN ({ids})",
    ),
    "journey_reschedulerequest": (
        "appointment_id",
        "SELECT journey_id FROM journey_appointment WHERE id IN ({ids})",
    ),
    "journey_feedback": (
        "milestone_id",
        "SELECT journey_id FROM journey_milestone WHERE id IN ({ids})",
    ),
    # A template's stages and name are shown on every journey made from it.
    "journey_stagedefinition": (
        "template_id",
        "SELECT id FROM journey_journey WHERE template_id IN ({ids})",
    ),
    "journey_journeytemplate": (
        "id",
        "SELECT id FROM journey_journey WHERE template_id IN ({ids})",
    ),
}
EVENTS = {"INSERT": ["new"], "UPDATE": ["old", "new"], "DELETE": ["old"]}


def _touched(table: str, sides: list[str], row: str) -> str:
    """SQL selecting the ids of the journeys a statement's rows belong to. ``row`` is how a
    side's rows are named: '{side}_rows' (a transition table) or '{SIDE}' (a row)."""
    column, lookup = CHILDREN[table]
    selects = []
    for side in sides:
        if row == "table":
            ids = f"SELECT {column} FROM {side}_rows"
        else:
            ids = f"SELECT {side.upper()}.{column}"
        selects.append(lookup.format(ids=ids) if lookup else ids)
    return " UNION ".join(selects)


def _postgresql(table: str) -> list[str]:
    sql = []
    for event, sides in EVENTS.items():
        name = f"mp_version_{table}_{event.lower()}"
        referencing = " ".join(f"{side.upper()} TABLE AS {side}_rows" for side in sides)
        sql += [
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN UPDATE {JOURNEY} SET version = version + 1 "
            f"WHERE id IN ({_touched(table, sides, 'table')}); RETURN NULL; END $$;",
            f"DROP TRIGGER IF EXISTS {name} ON {table};",
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}();",
        ]
    return sql


def _sqlite(table: str) -> list[str]:
    sql = []
    for event, sides in EVENTS.items():
        name = f"mp_version_{table}_{event.lower()}"
        sql += [
            f"DROP TRIGGER IF EXISTS {name};",
            f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW BEGIN "
            f"UPDATE {JOURNEY} SET version = version + 1 "
            f"WHERE id IN ({_touched(table, sides, 'row')}); END;",
        ]
    return sql


def forwards(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    statements = []
    if vendor == "postgresql":
        statements += [
            "CREATE OR REPLACE FUNCTION mp_version_journey_self() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN NEW.version := OLD.version + 1; RETURN NEW; END $$;",
            f"DROP TRIGGER IF EXISTS mp_version_journey_self ON {JOURNEY};",
            f"CREATE TRIGGER mp_version_journey_self BEFORE UPDATE ON {JOURNEY} "
            "FOR EACH ROW EXECUTE FUNCTION mp_version_journey_self();",
        ]
        for table in CHILDREN:
            statements += _postgresql(table)
    elif vendor == "sqlite":
        statements += [
            "DROP TRIGGER IF EXISTS mp_version_journey_self;",
            # Recursive triggers are off in SQLite: this UPDATE does not fire itself again.
            f"CREATE TRIGGER mp_version_journey_self AFTER UPDATE ON {JOURNEY} FOR EACH ROW "
            f"BEGIN UPDATE {JOURNEY} SET version = OLD.version + 1 WHERE id = NEW.id; END;",
        ]
        for table in CHILDREN:
            statements += _sqlite(table)
    else:
        raise NotImplementedError(f"No journey version triggers for {vendor}.")
    for statement in statements:
        schema_editor.execute(statement)


def backwards(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    names = ["mp_version_journey_self"] + [
        f"mp_version_{table}_{event.lower()}" for table in CHILDREN for event in EVENTS
    ]
    tables = {"mp_version_journey_self": JOURNEY} | {
        f"mp_version_{table}_{event.lower()}": table for table in CHILDREN for event in EVENTS
    }
    for name in names:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {tables[name]};")
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {name}();")
        else:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name};")


class Migration(migrations.Migration):
    dependencies = [("journey", "0007_jargon_term")]

    operations = [
        migrations.AddField(
            model_name="journey",
            name="version",
            field=models.PositiveBigIntegerField(default=0, editable=False),
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
