//! The store: Neutron objects as JSON rows, one global revision, and the
//! change log agents follow.
//!
//! Every mutation is one transaction that bumps the revision by exactly one,
//! writes the changed rows and appends one change-log row per changed object,
//! so the log has no gap and a reader can resume from any revision. Writers
//! are serialized twice: by a mutex inside the process and by the database
//! (SQLite `BEGIN IMMEDIATE`; PostgreSQL `SELECT … FOR UPDATE` on the
//! revision row), so two replicas on one PostgreSQL never interleave either.
//!
//! SQLite runs in WAL mode with `synchronous = FULL`: WAL makes a commit
//! atomic (a `kill -9` leaves either the whole transaction or none of it),
//! and FULL syncs the WAL on every commit, so a write answered 2xx survives
//! even a power cut, not only a process crash. NORMAL would be as safe against
//! `kill -9` but may lose the last commits on power loss; an API that has
//! answered "created" must not forget, so we pay the fsync.
//!
//! The state is cached in memory as [`Resources`] tagged with its revision.
//! Inside a write transaction the database revision is read first; if
//! another replica moved it, the cache catches up from the change log before
//! the mutation is validated.

use crate::error::ApiError;
use crate::resources::*;
use indexmap::IndexMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use uuid::Uuid;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres://`.
    #[error("--db `{0}`: unknown database URL; use sqlite:FILE (e.g. sqlite:dvr.db) or postgres://user@host/db")]
    Url(String),
    /// Connecting or migrating failed.
    #[error("--db `{url}`: {source}")]
    Db {
        /// The URL.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// Migrations failed.
    #[error("--db `{url}`: migrating the schema failed: {source}")]
    Migrate {
        /// The URL.
        url: String,
        /// The migrator's error.
        source: sqlx::migrate::MigrateError,
    },
    /// A stored row does not parse.
    #[error("stored {resource} {id} is not valid JSON for its type: {message}; the database was written by something else")]
    Corrupt {
        /// Collection.
        resource: String,
        /// Object id.
        id: String,
        /// Parser message.
        message: String,
    },
}

/// The connection pool of one of the two supported databases.
#[derive(Debug, Clone)]
pub enum Db {
    /// Embedded SQLite file.
    Sqlite(SqlitePool),
    /// PostgreSQL server.
    Pg(PgPool),
}

/// The state at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Revision of the last applied change.
    pub revision: i64,
    /// The deployment.
    pub res: Resources,
}

/// One change-log entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    /// Revision of the transaction that made it.
    pub revision: i64,
    /// `create`, `update` or `delete`.
    pub op: String,
    /// `network`, `subnet`, `port`, `router`, `floatingip`, `host`, `external_host`, `deployment`.
    pub resource: String,
    /// Object id.
    pub id: String,
    /// The object after the change (before it, for a delete).
    pub object: Value,
}

/// The store: database, cache, and the revision watch long-pollers wait on.
pub struct Store {
    db: Db,
    state: RwLock<Arc<Snapshot>>,
    write_lock: Mutex<()>,
    rev_tx: watch::Sender<i64>,
}

/// A Neutron object the store keeps (gives the generic code its id and meta).
pub trait Obj: Serialize + DeserializeOwned + Clone + PartialEq {
    /// Change-log resource name.
    const RESOURCE: &'static str;
    /// Standard attributes.
    fn common(&self) -> &Common;
    /// Standard attributes, mutable.
    fn common_mut(&mut self) -> &mut Common;
}

macro_rules! obj {
    ($t:ty, $name:literal) => {
        impl Obj for $t {
            const RESOURCE: &'static str = $name;
            fn common(&self) -> &Common {
                &self.common
            }
            fn common_mut(&mut self) -> &mut Common {
                &mut self.common
            }
        }
    };
}
obj!(Network, "network");
obj!(Subnet, "subnet");
obj!(Port, "port");
obj!(Router, "router");
obj!(FloatingIp, "floatingip");
obj!(Host, "host");
obj!(ExternalHost, "external_host");

/// Neutron's timestamp format, `2026-12-01T15:02:03Z`.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn diff_coll<T: Obj>(old: &IndexMap<Uuid, Arc<T>>, new: &mut IndexMap<Uuid, Arc<T>>, now: &str, out: &mut Vec<Change>) {
    for (id, n) in new.iter_mut() {
        match old.get(id) {
            Some(o) if Arc::ptr_eq(o, n) => {}
            None => {
                let c = Arc::make_mut(n).common_mut();
                c.revision_number = 1;
                c.created_at = now.to_string();
                c.updated_at = now.to_string();
                out.push(change("create", T::RESOURCE, id, &**n));
            }
            Some(o) if o != n => {
                let (rev, created) = (o.common().revision_number, o.common().created_at.clone());
                let c = Arc::make_mut(n).common_mut();
                c.revision_number = rev + 1;
                c.created_at = created;
                c.updated_at = now.to_string();
                out.push(change("update", T::RESOURCE, id, &**n));
            }
            Some(_) => {}
        }
    }
    for (id, o) in old {
        if !new.contains_key(id) {
            out.push(change("delete", T::RESOURCE, id, &**o));
        }
    }
}

/// Neutron's `revises_on_change`: a network's revision moves when one of its
/// subnets is added or removed, a router's when one of its interface ports is
/// (clients that `If-Match` on them see the change). Ours derive those
/// relations instead of storing them, so a parent whose content did not change
/// otherwise gets its `updated_at` cleared here: [`diff_coll`] then sees it
/// changed and stamps a new revision and `updated_at`.
fn touch_parents(old: &Resources, new: &mut Resources) {
    use std::collections::{BTreeSet, HashMap};
    // One pass over each side: parent id -> its children (subnets, interface ports).
    let subnets = |r: &Resources| -> HashMap<Uuid, BTreeSet<Uuid>> {
        let mut m: HashMap<Uuid, BTreeSet<Uuid>> = HashMap::new();
        for s in r.subnets.values() {
            m.entry(s.network_id).or_default().insert(s.common.id);
        }
        m
    };
    let interfaces = |r: &Resources| -> HashMap<String, BTreeSet<Uuid>> {
        let mut m: HashMap<String, BTreeSet<Uuid>> = HashMap::new();
        for p in r.ports.values().filter(|p| crate::resources::is_router_interface(&p.device_owner)) {
            m.entry(p.device_id.clone()).or_default().insert(p.common.id);
        }
        m
    };
    let (s_old, s_new) = (subnets(old), subnets(new));
    let nets: Vec<Uuid> = new
        .networks
        .iter()
        .filter(|(id, n)| old.networks.get(*id).is_some_and(|o| o == *n) && s_old.get(*id) != s_new.get(*id))
        .map(|(id, _)| *id)
        .collect();
    for id in nets {
        if let Some(n) = new.networks.get_mut(&id) {
            Arc::make_mut(n).common.updated_at.clear();
        }
    }
    let (i_old, i_new) = (interfaces(old), interfaces(new));
    let routers: Vec<Uuid> = new
        .routers
        .iter()
        .filter(|(id, x)| {
            let key = id.to_string();
            old.routers.get(*id).is_some_and(|o| o == *x) && i_old.get(&key) != i_new.get(&key)
        })
        .map(|(id, _)| *id)
        .collect();
    for id in routers {
        if let Some(x) = new.routers.get_mut(&id) {
            Arc::make_mut(x).common.updated_at.clear();
        }
    }
}

fn change<T: Serialize>(op: &str, resource: &str, id: &Uuid, obj: &T) -> Change {
    Change {
        revision: 0,
        op: op.into(),
        resource: resource.into(),
        id: id.to_string(),
        object: serde_json::to_value(obj).unwrap_or(Value::Null),
    }
}

/// The changes that turn `old` into `new`, stamping revision numbers and
/// timestamps on `new`'s created and changed objects.
pub fn diff(old: &Resources, new: &mut Resources) -> Vec<Change> {
    let now = now();
    let mut out = Vec::new();
    touch_parents(old, new);
    if old.name != new.name {
        let op = if new.name.is_some() { "update" } else { "delete" };
        out.push(Change {
            revision: 0,
            op: op.into(),
            resource: "deployment".into(),
            id: Uuid::nil().to_string(),
            object: serde_json::json!({"name": new.name}),
        });
    }
    diff_coll(&old.hosts, &mut new.hosts, &now, &mut out);
    diff_coll(&old.networks, &mut new.networks, &now, &mut out);
    diff_coll(&old.subnets, &mut new.subnets, &now, &mut out);
    diff_coll(&old.routers, &mut new.routers, &now, &mut out);
    diff_coll(&old.ports, &mut new.ports, &now, &mut out);
    diff_coll(&old.floatingips, &mut new.floatingips, &now, &mut out);
    diff_coll(&old.external_hosts, &mut new.external_hosts, &now, &mut out);
    out
}

fn apply_coll<T: Obj>(coll: &mut IndexMap<Uuid, Arc<T>>, op: &str, id: Uuid, object: &Value) -> Result<(), StoreError> {
    if op == "delete" {
        coll.shift_remove(&id);
        return Ok(());
    }
    let v: T = serde_json::from_value(object.clone()).map_err(|e| StoreError::Corrupt {
        resource: T::RESOURCE.into(),
        id: id.to_string(),
        message: e.to_string(),
    })?;
    match coll.get_mut(&id) {
        Some(slot) => *slot = Arc::new(v),
        None => {
            coll.insert(id, Arc::new(v));
        }
    }
    Ok(())
}

/// Apply one change (from the log or a stored row) to the state.
pub fn apply_change(res: &mut Resources, resource: &str, op: &str, id: &str, object: &Value) -> Result<(), StoreError> {
    let uid = Uuid::parse_str(id).map_err(|e| StoreError::Corrupt { resource: resource.into(), id: id.into(), message: e.to_string() })?;
    match resource {
        "deployment" => {
            res.name = if op == "delete" { None } else { object.get("name").and_then(Value::as_str).map(str::to_string) };
            Ok(())
        }
        "network" => apply_coll(&mut res.networks, op, uid, object),
        "subnet" => apply_coll(&mut res.subnets, op, uid, object),
        "port" => apply_coll(&mut res.ports, op, uid, object),
        "router" => apply_coll(&mut res.routers, op, uid, object),
        "floatingip" => apply_coll(&mut res.floatingips, op, uid, object),
        "host" => apply_coll(&mut res.hosts, op, uid, object),
        "external_host" => apply_coll(&mut res.external_hosts, op, uid, object),
        other => Err(StoreError::Corrupt { resource: other.into(), id: id.into(), message: "unknown resource".into() }),
    }
}

/// One agent row (Neutron's `agents` table, as the agents report it).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AgentRow {
    /// Agent id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// `Open vSwitch agent` or `L3 agent`.
    pub agent_type: String,
    /// The whole agent object as reported (binary, configurations, …).
    pub body: Value,
    /// Unix seconds of the last report.
    pub heartbeat: i64,
    /// Unix seconds of the first report.
    pub created: i64,
}

macro_rules! commit_changes {
    ($tx:expr, $rev:expr, $changes:expr) => {{
        let tx = $tx;
        for (i, c) in $changes.iter().enumerate() {
            let body = serde_json::to_string(&c.object).unwrap_or_default();
            match c.op.as_str() {
                "delete" => {
                    sqlx::query("DELETE FROM objects WHERE resource = $1 AND id = $2")
                        .bind(&c.resource)
                        .bind(&c.id)
                        .execute(&mut **tx)
                        .await?;
                }
                _ => {
                    sqlx::query(
                        "INSERT INTO objects (resource, id, seq, body) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (resource, id) DO UPDATE SET body = excluded.body",
                    )
                    .bind(&c.resource)
                    .bind(&c.id)
                    .bind($rev * 1_000_000 + i as i64)
                    .bind(&body)
                    .execute(&mut **tx)
                    .await?;
                }
            }
            sqlx::query("INSERT INTO changes (revision, idx, resource, id, op, object) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind($rev)
                .bind(i as i64)
                .bind(&c.resource)
                .bind(&c.id)
                .bind(&c.op)
                .bind(&body)
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query("UPDATE meta SET revision = $1 WHERE id = 1").bind($rev).execute(&mut **tx).await?;
    }};
}

macro_rules! read_changes {
    ($exec:expr, $since:expr, $limit:expr) => {{
        let rows = sqlx::query(
            "SELECT revision, resource, id, op, object FROM changes WHERE revision > $1 AND revision <= $2 \
             ORDER BY revision, idx",
        )
        .bind($since)
        .bind($limit)
        .fetch_all($exec)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let object: String = r.try_get("object")?;
            out.push(Change {
                revision: r.try_get("revision")?,
                resource: r.try_get("resource")?,
                id: r.try_get("id")?,
                op: r.try_get("op")?,
                object: serde_json::from_str(&object).unwrap_or(Value::Null),
            });
        }
        out
    }};
}

macro_rules! agent_rows {
    ($rows:expr) => {{
        let mut out = Vec::new();
        for r in $rows {
            let body: String = r.try_get("body")?;
            out.push(AgentRow {
                id: r.try_get("id")?,
                host: r.try_get("host")?,
                agent_type: r.try_get("agent_type")?,
                body: serde_json::from_str(&body).unwrap_or(Value::Null),
                heartbeat: r.try_get("heartbeat")?,
                created: r.try_get("created")?,
            });
        }
        out
    }};
}

impl Store {
    /// Open (and create/migrate) the database at `url`: `sqlite:FILE` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Arc<Store>, StoreError> {
        let dberr = |source| StoreError::Db { url: url.to_string(), source };
        let migerr = |source| StoreError::Migrate { url: url.to_string(), source };
        let db = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(dberr)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30))
                .disable_statement_logging();
            let pool = SqlitePoolOptions::new().max_connections(8).connect_with(opts).await.map_err(dberr)?;
            sqlx::migrate!("migrations/sqlite").run(&pool).await.map_err(migerr)?;
            Db::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(dberr)?.disable_statement_logging();
            let pool = PgPoolOptions::new().max_connections(16).connect_with(opts).await.map_err(dberr)?;
            sqlx::migrate!("migrations/postgres").run(&pool).await.map_err(migerr)?;
            Db::Pg(pool)
        } else {
            return Err(StoreError::Url(url.to_string()));
        };
        let snap = Self::load(&db).await.map_err(|e| match e {
            LoadError::Db(source) => StoreError::Db { url: url.to_string(), source },
            LoadError::Store(s) => s,
        })?;
        let (rev_tx, _) = watch::channel(snap.revision);
        let store = Arc::new(Store { db, state: RwLock::new(Arc::new(snap)), write_lock: Mutex::new(()), rev_tx });
        if let Db::Pg(pool) = &store.db {
            spawn_listener(Arc::downgrade(&store), pool.clone());
        }
        Ok(store)
    }

    async fn load(db: &Db) -> Result<Snapshot, LoadError> {
        let (revision, rows) = match db {
            Db::Sqlite(p) => {
                let rev: i64 = sqlx::query_scalar("SELECT revision FROM meta WHERE id = 1").fetch_one(p).await?;
                let rows = sqlx::query("SELECT resource, id, body FROM objects ORDER BY seq").fetch_all(p).await?;
                let rows: Vec<(String, String, String)> = rows
                    .iter()
                    .map(|r| Ok((r.try_get("resource")?, r.try_get("id")?, r.try_get("body")?)))
                    .collect::<Result<_, sqlx::Error>>()?;
                (rev, rows)
            }
            Db::Pg(p) => {
                let rev: i64 = sqlx::query_scalar("SELECT revision FROM meta WHERE id = 1").fetch_one(p).await?;
                let rows = sqlx::query("SELECT resource, id, body FROM objects ORDER BY seq").fetch_all(p).await?;
                let rows: Vec<(String, String, String)> = rows
                    .iter()
                    .map(|r| Ok((r.try_get("resource")?, r.try_get("id")?, r.try_get("body")?)))
                    .collect::<Result<_, sqlx::Error>>()?;
                (rev, rows)
            }
        };
        let mut res = Resources::default();
        for (resource, id, body) in rows {
            let v: Value = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                resource: resource.clone(),
                id: id.clone(),
                message: e.to_string(),
            })?;
            apply_change(&mut res, &resource, "create", &id, &v)?;
        }
        Ok(Snapshot { revision, res })
    }

    /// The current state (cheap: shared).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A receiver that sees every new revision this process learns of.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.rev_tx.subscribe()
    }

    /// Which database backs the store.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Run one mutation: `f` gets the current state and returns the new one
    /// (already validated) and a value for the caller. Nothing is written
    /// when `f` fails or changes nothing.
    pub async fn write<T>(&self, f: impl FnOnce(&Resources) -> Result<(Resources, T), ApiError>) -> Result<(Arc<Snapshot>, T), ApiError> {
        let _guard = self.write_lock.lock().await;
        match &self.db {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let db_rev: i64 = sqlx::query_scalar("SELECT revision FROM meta WHERE id = 1").fetch_one(&mut *tx).await?;
                let base = self.caught_up(db_rev, async |since| Ok(read_changes!(&mut *tx, since, db_rev))).await?;
                let (mut new, out) = f(&base.res)?;
                let changes = diff(&base.res, &mut new);
                if changes.is_empty() {
                    tx.rollback().await?;
                    return Ok((base, out));
                }
                let rev = db_rev + 1;
                commit_changes!(&mut tx, rev, changes);
                tx.commit().await?;
                Ok((self.publish(rev, new), out))
            }
            Db::Pg(pool) => {
                let mut tx = pool.begin().await?;
                let db_rev: i64 = sqlx::query_scalar("SELECT revision FROM meta WHERE id = 1 FOR UPDATE").fetch_one(&mut *tx).await?;
                let base = self.caught_up(db_rev, async |since| Ok(read_changes!(&mut *tx, since, db_rev))).await?;
                let (mut new, out) = f(&base.res)?;
                let changes = diff(&base.res, &mut new);
                if changes.is_empty() {
                    tx.rollback().await?;
                    return Ok((base, out));
                }
                let rev = db_rev + 1;
                commit_changes!(&mut tx, rev, changes);
                sqlx::query("SELECT pg_notify('dvr_changes', $1)").bind(rev.to_string()).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok((self.publish(rev, new), out))
            }
        }
    }

    /// The cached state, first brought up to `db_rev` from the change log
    /// when another replica wrote since we last looked.
    async fn caught_up(
        &self,
        db_rev: i64,
        read: impl AsyncFnOnce(i64) -> Result<Vec<Change>, sqlx::Error>,
    ) -> Result<Arc<Snapshot>, ApiError> {
        let snap = self.snapshot();
        if snap.revision == db_rev {
            return Ok(snap);
        }
        if snap.revision > db_rev {
            return Err(ApiError::internal(format!(
                "the database is at revision {db_rev} but this server has seen {}; was the database replaced under a running server? Restart it",
                snap.revision
            )));
        }
        let changes = read(snap.revision).await?;
        let mut res = snap.res.clone();
        for c in &changes {
            apply_change(&mut res, &c.resource, &c.op, &c.id, &c.object).map_err(|e| ApiError::internal(e.to_string()))?;
        }
        Ok(self.publish(db_rev, res))
    }

    fn publish(&self, revision: i64, res: Resources) -> Arc<Snapshot> {
        let snap = Arc::new(Snapshot { revision, res });
        {
            let mut w = self.state.write().unwrap_or_else(|e| e.into_inner());
            if w.revision <= revision {
                *w = snap.clone();
            }
        }
        self.rev_tx.send_if_modified(|r| {
            if *r < revision {
                *r = revision;
                true
            } else {
                false
            }
        });
        snap
    }

    /// The state as of the database's latest commit: one cheap revision read,
    /// and a catch-up from the change log only when another replica (or
    /// process) wrote since. Reads through any replica see every write that
    /// was answered, whichever replica answered it.
    pub async fn current(&self) -> Result<Arc<Snapshot>, ApiError> {
        let snap = self.snapshot();
        let db_rev: i64 = match &self.db {
            Db::Sqlite(p) => sqlx::query_scalar("SELECT revision FROM meta WHERE id = 1").fetch_one(p).await?,
            Db::Pg(p) => sqlx::query_scalar("SELECT revision FROM meta WHERE id = 1").fetch_one(p).await?,
        };
        if db_rev > snap.revision { self.refresh().await } else { Ok(snap) }
    }

    /// Bring the cache up to the database (another replica may have written).
    pub async fn refresh(&self) -> Result<Arc<Snapshot>, ApiError> {
        let _guard = self.write_lock.lock().await;
        match &self.db {
            Db::Sqlite(p) => {
                let db_rev: i64 = sqlx::query_scalar("SELECT revision FROM meta WHERE id = 1").fetch_one(p).await?;
                self.caught_up(db_rev, async |since| Ok(read_changes!(p, since, db_rev))).await
            }
            Db::Pg(p) => {
                let db_rev: i64 = sqlx::query_scalar("SELECT revision FROM meta WHERE id = 1").fetch_one(p).await?;
                self.caught_up(db_rev, async |since| Ok(read_changes!(p, since, db_rev))).await
            }
        }
    }

    /// Change-log entries with `since < revision <= until`, in order.
    pub async fn changes(&self, since: i64, until: i64) -> Result<Vec<Change>, ApiError> {
        Ok(match &self.db {
            Db::Sqlite(p) => read_changes!(p, since, until),
            Db::Pg(p) => read_changes!(p, since, until),
        })
    }

    /// Insert or update an agent's row (no revision: heartbeats are not state).
    pub async fn upsert_agent(&self, a: &AgentRow) -> Result<(), ApiError> {
        let body = serde_json::to_string(&a.body).unwrap_or_default();
        let q = "INSERT INTO agents (id, host, agent_type, body, heartbeat, created) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (host, agent_type) DO UPDATE SET body = excluded.body, heartbeat = excluded.heartbeat";
        match &self.db {
            Db::Sqlite(p) => {
                sqlx::query(q)
                    .bind(&a.id)
                    .bind(&a.host)
                    .bind(&a.agent_type)
                    .bind(&body)
                    .bind(a.heartbeat)
                    .bind(a.created)
                    .execute(p)
                    .await?;
            }
            Db::Pg(p) => {
                sqlx::query(q)
                    .bind(&a.id)
                    .bind(&a.host)
                    .bind(&a.agent_type)
                    .bind(&body)
                    .bind(a.heartbeat)
                    .bind(a.created)
                    .execute(p)
                    .await?;
            }
        }
        Ok(())
    }

    /// Every agent row, oldest first.
    pub async fn agents(&self) -> Result<Vec<AgentRow>, ApiError> {
        let q = "SELECT id, host, agent_type, body, heartbeat, created FROM agents ORDER BY created, host, agent_type";
        let rows = match &self.db {
            Db::Sqlite(p) => agent_rows!(sqlx::query(q).fetch_all(p).await?),
            Db::Pg(p) => agent_rows!(sqlx::query(q).fetch_all(p).await?),
        };
        Ok(rows)
    }

    /// Delete an agent row; `false` when there was none.
    pub async fn delete_agent(&self, id: &str) -> Result<bool, ApiError> {
        let n = match &self.db {
            Db::Sqlite(p) => sqlx::query("DELETE FROM agents WHERE id = $1").bind(id).execute(p).await?.rows_affected(),
            Db::Pg(p) => sqlx::query("DELETE FROM agents WHERE id = $1").bind(id).execute(p).await?.rows_affected(),
        };
        Ok(n > 0)
    }
}

enum LoadError {
    Db(sqlx::Error),
    Store(StoreError),
}
impl From<sqlx::Error> for LoadError {
    fn from(e: sqlx::Error) -> Self {
        LoadError::Db(e)
    }
}
impl From<StoreError> for LoadError {
    fn from(e: StoreError) -> Self {
        LoadError::Store(e)
    }
}

/// PostgreSQL: wake on `NOTIFY dvr_changes` from any replica, catch the cache
/// up and wake long-pollers, so a change-log reader sees another replica's
/// write within milliseconds instead of polling.
fn spawn_listener(store: std::sync::Weak<Store>, pool: PgPool) {
    tokio::spawn(async move {
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if store.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            };
            if listener.listen("dvr_changes").await.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            // Catch up once after (re)connecting: notifications may have been missed.
            match store.upgrade() {
                Some(s) => {
                    let _ = s.refresh().await;
                }
                None => return,
            }
            while listener.recv().await.is_ok() {
                match store.upgrade() {
                    Some(s) => {
                        let _ = s.refresh().await;
                    }
                    None => return,
                }
            }
        }
    });
}
