import sqlite3, os, time, tempfile, hashlib, statistics
from itertools import chain, repeat
def run(schema, rows_fn, n_entries=5000, body=430, per_row=1, reps=7):
    ts = []
    for rep in range(reps):
        d = tempfile.mkdtemp()
        c = sqlite3.connect(os.path.join(d, "x.db"), isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=OFF"); c.execute("PRAGMA wal_autocheckpoint=0")
        c.execute(schema)
        bodies = [os.urandom(body//2).hex().encode() for _ in range(n_entries)]
        leaves = [hashlib.sha256(b).digest() for b in bodies]
        base = 0
        t0 = time.process_time()
        for batch in range(10):
            c.execute("BEGIN IMMEDIATE")
            rows_fn(c, base, bodies, leaves, per_row)
            c.execute("COMMIT")
            base += n_entries
        c.execute("PRAGMA wal_checkpoint(RESTART)")
        ts.append((time.process_time()-t0)/(10*n_entries)*1e6)
        c.close()
    return statistics.median(ts)
SQL64 = "INSERT INTO audit_log(tenant,idx,body,leaf) VALUES" + ",".join(["(?,?,?,?)"]*64)
def multi(c, base, bodies, leaves, per_row):
    n = len(bodies)
    params = list(chain.from_iterable(zip(repeat("acme"), range(base, base+n), map(bytearray, bodies), map(bytearray, leaves))))
    done = 0
    while n - done >= 64:
        c.execute(SQL64, params[4*done:4*(done+64)]); done += 64
    c.executemany("INSERT INTO audit_log(tenant,idx,body,leaf) VALUES(?,?,?,?)", [params[4*i:4*i+4] for i in range(done, n)])
def packed(c, base, bodies, leaves, per_row):
    n = len(bodies); rows = []
    for i in range(0, n, per_row):
        rows.append(("acme", base+i, bytearray(b"".join(len(b).to_bytes(4,"big")+b for b in bodies[i:i+per_row])), bytearray(b"".join(leaves[i:i+per_row]))))
    c.executemany("INSERT INTO audit_log(tenant,idx,body,leaf) VALUES(?,?,?,?)", rows)
WR = "CREATE TABLE audit_log(tenant TEXT NOT NULL, idx INTEGER NOT NULL, body BLOB NOT NULL, leaf BLOB NOT NULL, PRIMARY KEY(tenant, idx)) WITHOUT ROWID"
RID = "CREATE TABLE audit_log(tenant TEXT NOT NULL, idx INTEGER NOT NULL, body BLOB NOT NULL, leaf BLOB NOT NULL, PRIMARY KEY(tenant, idx))"
print("without rowid, 1/row:", run(WR, multi))
print("rowid table, 1/row:", run(RID, multi))
print("without rowid, nobody:", run(WR, multi, body=10))
print("packed 5/row WR:", run(WR, packed, per_row=5))
print("packed 5/row RID:", run(RID, packed, per_row=5))
print("packed 64/row RID:", run(RID, packed, per_row=64))
