import sqlite3, time, os, sys, uuid
variant, N = sys.argv[1], int(sys.argv[2])
p=f'/tmp/s64/c2-{variant}-{N}.db'
for f in (p,p+'-wal',p+'-shm'):
    try: os.remove(f)
    except FileNotFoundError: pass
c=sqlite3.connect(p, isolation_level=None)
c.execute("pragma journal_mode=wal"); c.execute("pragma synchronous=normal")
c.executescript("""
CREATE TABLE sessions(id TEXT PRIMARY KEY, workflow TEXT NOT NULL, version TEXT NOT NULL, tenant TEXT NOT NULL, status TEXT NOT NULL, input TEXT NOT NULL, output TEXT, error TEXT, created REAL NOT NULL, started REAL, finished REAL, steps INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0, owner TEXT, lease_until REAL, active_s REAL, seg_mark REAL, wake_at REAL, wait_name TEXT, headers TEXT, parent TEXT, audit_cursor TEXT);
CREATE INDEX sessions_status ON sessions(status);
CREATE INDEX sessions_tenant_status ON sessions(tenant,status);
CREATE INDEX sessions_tenant ON sessions(tenant, created, id);
CREATE TABLE kv(namespace TEXT, key TEXT, value TEXT, PRIMARY KEY(namespace,key)) WITHOUT ROWID;
CREATE TABLE ac(id TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
""")
cur=c.cursor()
upd="UPDATE sessions SET audit_cursor=? WHERE id=? AND COALESCE(audit_cursor,(SELECT value FROM kv WHERE namespace='audit-cursors' AND key=sessions.id)) IS ?"
ins="INSERT INTO ac(id,value) VALUES(?,?) ON CONFLICT(id) DO NOTHING"
for n in range(N):
    i=uuid.uuid4().hex
    c.execute("begin")
    cur.execute("insert into sessions(id,workflow,version,tenant,status,input,output,created,headers) values(?,?,?,?,?,?,?,?,?)",(i,'w1','abc123def','default','running','{"text":"hello there how are you"}',None,1.0,'{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'))
    cur.execute("update sessions set status='completed', output=?, finished=?, steps=5 where id=?", ('{"answer":"ok fine thanks a lot"}', 2.0, i))
    if variant=='upd': cur.execute(upd, ('1765123456.123456', i, None))
    elif variant=='ins': cur.execute(ins, (i,'1765123456.123456'))
    c.execute("commit")
