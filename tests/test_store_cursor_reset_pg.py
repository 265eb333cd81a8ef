"""The PostgreSQL ``audit_cursor_reset`` add-on's trigger function reads ``kv`` of its own
store's schema, whatever the search_path of the connection that inserts a session row."""

from __future__ import annotations

from pathlib import Path

import convoy
from convoy.stores._protocol import AUDIT_CURSORS

from .conftest import store_db


async def test_a_session_inserted_under_another_search_path_clears_its_own_stores_cursor(
        tmp_path: Path) -> None:
    """An insert into the store's ``sessions`` from a connection whose search_path is ''
    (pg_dump --data-only's scripts) failed ("relation kv does not exist") before the
    function pinned its schema; from one whose search_path names another Convoy store's
    schema, it deleted that store's cursor."""
    import psycopg

    gen_a, gen_b = store_db("postgres", tmp_path), store_db("postgres", tmp_path)
    a, b = next(gen_a), next(gen_b)
    try:
        for url in (a, b):
            async with convoy.Engine(url):
                pass
        sa, sb = a.split("schema=")[1], b.split("schema=")[1]
        server = a.split("?")[0]
        row = ("INSERT INTO {s}.sessions(id,workflow,version,tenant,status,input,created) "
               "VALUES(%s,'w','1','default','completed','{{}}',1)")
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {sb}.kv(namespace,key,value) VALUES(%s,'x','5.0')",
                         (AUDIT_CURSORS,))
            conn.execute("SET search_path = ''")
            conn.execute(row.format(s=sa), ("r0",))  # failed: relation "kv" does not exist
            conn.execute(f'SET search_path = "{sb}"')
            conn.execute(row.format(s=sa), ("x",))
            left = conn.execute(f"SELECT count(*) FROM {sb}.kv WHERE key='x'").fetchone()
        assert left == (1,)  # failed: (0,), the other store's cursor deleted
    finally:
        for gen in (gen_a, gen_b):
            next(gen, None)
