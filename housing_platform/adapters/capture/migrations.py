"""Bring a capture store created by an older version up to the current ``captures`` columns.

``metadata.create_all`` creates missing tables but never alters an existing one, so a store written
before a nullable column was added (the safe rollout's ``shadow_model_version`` and
``shadow_prediction``) would refuse every insert naming it. :func:`add_missing_capture_columns` adds
each nullable column of :data:`~housing_platform.adapters.capture.tables.captures_table` the table lacks
(its old rows read null), idempotently, on SQLite and PostgreSQL alike. A missing NOT NULL column cannot
be added this way and is left for the store's insert to refuse, naming it. A missing *table* (e.g.
``scoring_failures``, added with the rollout's error rate) needs nothing here: ``create_all`` creates it.
"""

from __future__ import annotations

from sqlalchemy import inspect

from housing_platform.adapters.capture.tables import captures_table


def add_missing_capture_columns(conn, schema: str | None) -> list[str]:
    """ALTER TABLE ``captures`` ADD COLUMN for each nullable column it lacks; returns the names added."""
    present = {column["name"] for column in inspect(conn).get_columns(captures_table.name, schema=schema)}
    prefix = f"{conn.dialect.identifier_preparer.quote_schema(schema)}." if schema else ""
    added = []
    for column in captures_table.columns:
        if column.name in present or not column.nullable:
            continue
        kind = column.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {prefix}{captures_table.name} ADD COLUMN {column.name} {kind}")
        added.append(column.name)
    return added
