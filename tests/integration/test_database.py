"""Database-only tests, each on a database of its own cloned from the migrated template."""

from __future__ import annotations

import time
import uuid

from tasker_testing.plugin import FreshDatabase


def test_uuid_v7_layout(fresh_database: FreshDatabase) -> None:
    before_ms = int(time.time() * 1000)
    row = fresh_database.conn.execute("SELECT uuid_generate_v7()").fetchone()
    assert row is not None
    value = uuid.UUID(str(row[0]))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122  # variant bits 10
    ts_ms = value.int >> 80
    assert abs(ts_ms - before_ms) < 60_000, "48-bit ms timestamp close to now"


def test_uuid_v7_is_ordered_within_a_session(fresh_database: FreshDatabase) -> None:
    rows = fresh_database.conn.execute(
        "SELECT uuid_generate_v7() FROM generate_series(1, 500)"
    ).fetchall()
    values = [str(r[0]) for r in rows]
    assert values == sorted(values)
    assert len(set(values)) == 500


def test_pgmq_send_read_archive(fresh_database: FreshDatabase) -> None:
    conn = fresh_database.conn
    conn.execute("SELECT pgmq.create('harness_probe')")
    sent = conn.execute(
        "SELECT * FROM pgmq.send('harness_probe', '{\"n\": 6}'::jsonb, 0::integer)"
    ).fetchone()
    assert sent is not None
    msg_id = sent[0]
    cur = conn.execute("SELECT * FROM pgmq.read('harness_probe', 30::integer, 1::integer)")
    names = [d.name for d in cur.description or []]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    assert [r["msg_id"] for r in rows] == [msg_id]
    assert rows[0]["message"] == {"n": 6}
    archived = conn.execute("SELECT pgmq.archive('harness_probe', %s::bigint)", [msg_id]).fetchone()
    assert archived == (True,)
    assert conn.execute("SELECT count(*) FROM pgmq.q_harness_probe").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM pgmq.a_harness_probe").fetchone() == (1,)


def test_fresh_databases_are_isolated_and_migrated(fresh_database: FreshDatabase) -> None:
    conn = fresh_database.conn
    assert conn.execute("SELECT current_database()").fetchone() == (fresh_database.name,)
    queues = conn.execute("SELECT queue_name FROM pgmq.list_queues()").fetchall()
    assert ("orchestration_step_results",) in queues, "migrations and queues came with the template"
    conn.execute("SELECT pgmq.create('only_here')")


def test_fresh_database_is_a_clone_of_the_migrated_template(tasker_stack) -> None:  # type: ignore[no-untyped-def]
    """Cloned, not re-migrated: the copy holds the template's migrations and queues at once.

    How fast the clone is belongs to the benchmark (nox -s bench), not to a test assertion.
    """
    name = tasker_stack.create_database()
    try:
        with tasker_stack.connect(name) as conn:
            migrations = conn.execute("SELECT count(*) FROM tasker.schema_migrations").fetchone()
            queues = {row[0] for row in conn.execute("SELECT queue_name FROM pgmq.list_queues()")}
        with tasker_stack.connect() as main:
            expected = main.execute("SELECT count(*) FROM tasker.schema_migrations").fetchone()
    finally:
        tasker_stack.drop_database(name)
    assert migrations == expected
    assert "orchestration_step_results" in queues


def test_db_fixture_sees_the_main_database(db) -> None:  # type: ignore[no-untyped-def]
    assert db.execute("SELECT current_database()").fetchone() == ("tasker",)
