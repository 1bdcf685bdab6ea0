"""PostgreSQL: the version triggers find their journeys by primary key; the two tables the
spine updates on every event leave room on each page for their rows' new versions.

* ``0008``'s statement-level triggers picked journeys with ``id IN (SELECT ... FROM
  new_rows)``. The planner cannot know how few journeys a transition table's rows name,
  and for a batch's milestone update (600 rows, 100 journeys) it hashed the rows and
  scanned the whole journey table: the trigger took 6.9 of the statement's 14 ms at
  20,000 journeys, 4.5 of them reading the table, and growing with it.
  ``= ANY(ARRAY(...))`` is looked up in the primary key index whatever the planner
  guesses.
* ``fillfactor``: the spine updates a journey row three times per event (the milestones'
  and the ETA row's triggers, then its own fields) and about six milestone rows. None of
  the updated columns is indexed, so PostgreSQL can write each new row version on the
  same page without touching the indexes (a HOT update), but only where the page has
  room. Tables filled by bulk inserts have none: at 100% only a fifth of the journey
  updates were HOT, and each of the others wrote to the table's six indexes. Existing
  pages keep their layout until the table is rewritten (``VACUUM FULL``, pg_repack);
  new ones are filled to these figures.

SQLite's row-level triggers already look journeys up by key; nothing changes there.
"""

import importlib

from django.db import migrations

versions = importlib.import_module("journey.migrations.0008_journey_version")

FILLFACTOR = {"journey_journey": 70, "journey_milestone": 85}


def _by_index(table: str, event: str, sides: list[str]) -> str:
    """The trigger function of 0008, looking its journeys up by key. Each array holds
    distinct ids: a bulk load's statement names a journey once per row it wrote."""
    column, lookup = versions.CHILDREN[table]
    selects = [f"SELECT DISTINCT {column} FROM {side}_rows" for side in sides]
    if lookup:  # the rows name a leg, an appointment...: their journeys, by key too
        lookup = lookup.replace("SELECT ", "SELECT DISTINCT ", 1)
        lookup = lookup.replace("IN ({ids})", "= ANY(ARRAY({ids}))")
        selects = [lookup.format(ids=select) for select in selects]
    name = f"mp_version_{table}_{event.lower()}"
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN UPDATE {versions.JOURNEY} SET version = version + 1 "
        f"WHERE id = ANY(ARRAY({' UNION '.join(selects)})); RETURN NULL; END $$;"
    )


def forwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in versions.CHILDREN:
        for event, sides in versions.EVENTS.items():
            schema_editor.execute(_by_index(table, event, sides))
    for table, percent in FILLFACTOR.items():
        schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {percent});")


def backwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in versions.CHILDREN:
        for statement in versions._postgresql(table):  # 0008's functions and triggers
            schema_editor.execute(statement)
    for table in FILLFACTOR:
        schema_editor.execute(f"ALTER TABLE {table} RESET (fillfactor);")


class Migration(migrations.Migration):
    dependencies = [("journey", "0009_reminder_indexes")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
