//! The store of registry replicas sharing one PostgreSQL (`--store postgres://...`): every
//! change runs in one transaction under an advisory lock, reading the stored state, editing it
//! and writing what changed, so that of two replicas changing at once neither loses the
//! other's change; it ends with a `NOTIFY toolmesh_state`, and each replica LISTENs on its own
//! connection to reload what another replica changed (see [`Store::changes`]).
//!
//! The [`Store`] trait is synchronous, and its callers run it off the async workers (on tokio's
//! blocking pool, as they do for the embedded store's fsyncs). The database I/O runs on this
//! store's own runtime (one thread) through `tokio-postgres`: a caller's thread blocks on the
//! answer, never a worker of the registry's runtime, and the listening connection lives there
//! too, reconnecting while the database is away.

use super::pg_connect::{redact, Server, Target};
use super::pg_schema::{self, failed, STATE_LOCK};
use super::pg_tls::{PgTls, Refused};
use super::{Durable, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, Client, Config};
use toolmesh_core::{Error, ErrorKind, Result};

/// The channel changes are announced on.
const CHANNEL: &str = "toolmesh_state";
/// How long one store operation (connecting included) may take before it fails: a database
/// that does not answer fails the operator's request instead of holding it.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the listener waits between attempts to reconnect.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How long a starting replica waits for PostgreSQL to answer (`--store-wait`): long enough to
/// ride out a database that restarts with it, short enough that a wrong URL fails the start
/// visibly.
pub const DEFAULT_START_WAIT: Duration = Duration::from_secs(10);

pub struct Postgres {
    config: Config,
    tls: PgTls,
    described: String,
    /// `None` only while dropping (see `Drop`).
    runtime: Option<Runtime>,
    /// The connection changes and loads go over; opened again after it broke.
    client: tokio::sync::Mutex<Option<Client>>,
    /// Counts the announced changes (and reconnections of the listener, after which anything
    /// may have changed unseen).
    changed: watch::Sender<u64>,
}

impl Postgres {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database[?sslmode=...]`, see
    /// `pg_connect`) and migrates the schema. A server that does not answer is waited for up to
    /// `wait`; then the start fails, as a replica serving without the stored revocations would
    /// let revoked identities in. Blocks: call it off the async workers.
    pub fn open(url: &str, wait: Duration) -> Result<Arc<Postgres>> {
        let Target { mut config, tls, described } = Target::parse(url)?;
        config.connect_timeout(OPERATION_TIMEOUT);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("toolmesh-postgres")
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start the PostgreSQL store's thread: {e}")))?;
        let store = Arc::new(Postgres {
            described,
            config,
            tls,
            runtime: Some(runtime),
            client: tokio::sync::Mutex::new(None),
            changed: watch::channel(0).0,
        });
        store.runtime().handle().block_on(store.first_connection(url, wait))?;
        let applied = store.run(async {
            let mut client = store.connected().await?;
            let client = client.as_mut().expect("connected");
            let tx = client.transaction().await.map_err(failed("begin the migration"))?;
            let applied = pg_schema::migrate(&tx).await?;
            tx.commit().await.map_err(failed("commit the migration"))?;
            Ok(applied)
        })?;
        if !applied.is_empty() {
            tracing::info!(store = %store.described, ?applied, schema_version = pg_schema::SCHEMA_VERSION, "migrated the PostgreSQL schema");
        }
        store.runtime().spawn(listen_forever(store.config.clone(), store.tls.clone(), store.changed.clone()));
        Ok(store)
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    /// Runs `operation` on this store's runtime, blocking the calling thread until it ends or
    /// [`OPERATION_TIMEOUT`] passes.
    fn run<T>(&self, operation: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.runtime().handle().block_on(async {
            tokio::time::timeout(OPERATION_TIMEOUT, operation).await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::RegistryUnavailable,
                    format!("PostgreSQL at {} did not answer within {OPERATION_TIMEOUT:?}", self.described),
                ))
            })
        })
    }

    /// Opens the operations' connection, retrying while the server is away (refused, reset,
    /// timed out, starting up) until `wait` has passed; a refusal (TLS, authentication, no such
    /// database) fails at once.
    async fn first_connection(&self, url: &str, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        let mut pause = RECONNECT_MIN;
        loop {
            let error = match self.connected().await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let Some(away) = error.away else { return Err(error.error) };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new(
                    ErrorKind::RegistryUnavailable,
                    format!(
                        "PostgreSQL at '{}' did not answer within {wait:?} ({away}): a replica does not start without its store, \
                         which holds the entities and revocations (starting empty would let revoked identities in); start \
                         PostgreSQL or correct --store, or wait longer with --store-wait",
                        redact(url)
                    ),
                ));
            }
            tracing::info!(store = %self.described, "PostgreSQL is not answering yet ({away}); retrying");
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(RECONNECT_MAX);
        }
    }

    /// The operations' connection, opened again when it is closed.
    async fn connected(&self) -> std::result::Result<tokio::sync::MutexGuard<'_, Option<Client>>, ConnectError> {
        let mut client = self.client.lock().await;
        if client.as_ref().is_none_or(Client::is_closed) {
            let (fresh, connection) = self.config.connect(self.tls.clone()).await.map_err(ConnectError::from)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("PostgreSQL connection closed: {e}");
                }
            });
            *client = Some(fresh);
        }
        Ok(client)
    }

    async fn change_async(&self, edit: &mut dyn FnMut(&mut Durable)) -> Result<()> {
        let mut client = self.connected().await?;
        let result = async {
            let tx = client.as_mut().expect("connected").transaction().await.map_err(failed("begin a change"))?;
            // One change at a time across the replicas: each edits what the one before stored.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&STATE_LOCK]).await.map_err(failed("lock the state"))?;
            let current = pg_schema::read(&tx).await?;
            let mut next = current.clone();
            edit(&mut next);
            if next != current {
                pg_schema::write(&tx, &current, &next).await?;
                tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL]).await.map_err(failed("announce the change"))?;
            }
            tx.commit().await.map_err(failed("commit the change"))
        }
        .await;
        if result.is_err() {
            // A failed statement may leave the connection unusable: the next operation opens another.
            *client = None;
        }
        result
    }
}

impl Store for Postgres {
    fn describe(&self) -> String {
        self.described.clone()
    }

    fn load(&self) -> Result<Durable> {
        self.run(async {
            let mut client = self.connected().await?;
            let loaded = async {
                let tx = client.as_mut().expect("connected").transaction().await.map_err(failed("begin a read"))?;
                let state = pg_schema::read(&tx).await?;
                tx.commit().await.map_err(failed("end a read"))?;
                Ok(state)
            }
            .await;
            if loaded.is_err() {
                *client = None;
            }
            loaded
        })
    }

    fn change(&self, edit: &mut dyn FnMut(&mut Durable)) -> Result<()> {
        self.run(self.change_async(edit))
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changed.subscribe())
    }

    fn shared_agents(&self) -> Option<super::SharedAgents> {
        let server = Server { config: self.config.clone(), tls: self.tls.clone() };
        Some(super::SharedAgents::new(server, self.runtime().handle().clone()))
    }
}

impl Drop for Postgres {
    /// The registry drops its store on an async worker, where a runtime may not block to stop.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Keeps one connection LISTENing on [`CHANNEL`], counting each notification in `changed`;
/// after a (re)connection it counts one more, since changes may have gone by unseen.
async fn listen_forever(config: Config, tls: PgTls, changed: watch::Sender<u64>) {
    let mut pause = RECONNECT_MIN;
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                // The connection only makes progress while polled: drive it here and hand the
                // LISTEN to a task of its own.
                let listen = tokio::spawn(async move { client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map(|()| client) });
                let mut listening = None;
                let mut listen = Some(listen);
                loop {
                    tokio::select! {
                        message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                            Some(Ok(AsyncMessage::Notification(_))) => changed.send_modify(|n| *n += 1),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => { tracing::warn!("PostgreSQL listener connection lost: {e}"); break; }
                            None => { tracing::warn!("PostgreSQL listener connection closed"); break; }
                        },
                        joined = async { listen.as_mut().expect("guarded").await }, if listen.is_some() => {
                            listen = None;
                            match joined {
                                Ok(Ok(client)) => {
                                    listening = Some(client);
                                    pause = RECONNECT_MIN;
                                    changed.send_modify(|n| *n += 1);
                                }
                                _ => { tracing::warn!("cannot LISTEN on PostgreSQL"); break; }
                            }
                        }
                    }
                }
                drop(listening);
            }
            Err(e) => tracing::debug!("PostgreSQL listener cannot connect: {e}"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

/// A failed connection: the error to report, and when the server is only away (not answering,
/// starting up) rather than refusing, what went wrong, for a starting replica to wait on.
struct ConnectError {
    error: Error,
    away: Option<String>,
}

impl From<ConnectError> for Error {
    fn from(e: ConnectError) -> Error {
        e.error
    }
}

impl From<tokio_postgres::Error> for ConnectError {
    fn from(e: tokio_postgres::Error) -> ConnectError {
        use std::error::Error as _;
        let refused_tls = e.source().is_some_and(|cause| cause.is::<Refused>());
        let starting = e.as_db_error().is_some_and(|db| db.code().code() == "57P03");
        let unreachable = e.source().is_some_and(|cause| cause.is::<std::io::Error>());
        let away = (!refused_tls && (starting || unreachable)).then(|| e.source().map_or_else(|| e.to_string(), ToString::to_string));
        let mut error = failed("connect")(e);
        if error.message().contains("server does not support TLS") {
            error = Error::new(
                error.kind(),
                format!("{}: the server has TLS off (sslmode asks for it); turn on ssl in its postgresql.conf with a certificate, or on this machine use sslmode=disable", error.message()),
            );
        }
        ConnectError { error, away }
    }
}
