//! The registrations replicas on PostgreSQL share, in `toolmesh_agents` (one row per agent).
//!
//! A replica writes what it accepts (a registration, a deregistration) in one transaction with
//! a `NOTIFY toolmesh_agents, '<agent id>'`; every replica LISTENs and takes the row (or its
//! absence) into memory, which wakes the long polls of the agents it changes. The notices queued
//! by then are read together, in one query, so that a burst of registrations costs a few round
//! trips rather than one each, which a later change would wait behind. Writes go behind
//! the answer: with the database away, agents are served from memory and the changes wait
//! (the newest per agent) until it returns.
//!
//! Heartbeats are not written one by one: each replica keeps them in memory and, once per
//! period, marks every agent that beat there in ONE `UPDATE ... WHERE agent_id = ANY(...)`,
//! then reads each agent's silence (`now() - last_seen`, one row per agent, no body) to learn
//! the other replicas' heartbeats, fetching the registrations it missed and dropping the ones
//! the store no longer holds.
//!
//! Eviction runs once per mesh: the replica holding the advisory lock [`LEADER_LOCK`] on a
//! session of its own (a leader that dies loses it with its connection) deletes the rows
//! silent for longer than the eviction window plus one period (the batching's delay), each
//! deleted row counted and logged there alone.
//!
//! All of it runs on the PostgreSQL store's own runtime.

use super::pg_connect::Server;
use super::pg_schema::failed;
use crate::state::{Caller, Change, Registry};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, Client};
use toolmesh_core::registry_api::RegisterRequest;
use toolmesh_core::{Error, ErrorKind, Result};

/// The channel registration changes are announced on; the payload is the agent id.
const CHANNEL: &str = "toolmesh_agents";
/// Held by the one replica that evicts (any number no other user of the database takes).
const LEADER_LOCK: i64 = 0x746f_6f6c_6d65_736c;
/// How long one database operation may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// The shared registrations of one PostgreSQL store: its connection settings and the runtime
/// its I/O runs on.
pub struct SharedAgents {
    config: Server,
    runtime: Handle,
}

/// One stored registration.
struct Stored {
    registration: RegisterRequest,
    caller: Caller,
    silent: Duration,
}

impl SharedAgents {
    pub(super) fn new(config: Server, runtime: Handle) -> SharedAgents {
        SharedAgents { config, runtime }
    }

    /// Every stored registration into `registry` (a replica's start). Blocks: call it off the
    /// async workers.
    pub fn load(&self, registry: &Registry) -> Result<usize> {
        let stored = self.runtime.block_on(timed(async {
            let client = connect(&self.config).await?;
            let rows = client
                .query(&format!("SELECT agent_id, identity, entity, registration, {SILENCE_MS} FROM toolmesh_agents"), &[])
                .await
                .map_err(failed("read the registrations"))?;
            Ok(rows.iter().filter_map(stored).collect::<Vec<_>>())
        }))?;
        let count = stored.len();
        for s in stored {
            registry.adopt(s.registration, s.caller, s.silent);
        }
        Ok(count)
    }

    /// Shares `registry`'s registrations with the other replicas until the runtime stops:
    /// writes its `changes`, takes theirs, batches heartbeats every `period`, and (when this
    /// replica leads) evicts agents silent for `max_silence`.
    pub fn spawn(self, registry: Arc<Registry>, changes: mpsc::UnboundedReceiver<Change>, period: Duration, max_silence: Duration) {
        let (notified, notifications) = mpsc::unbounded_channel();
        self.runtime.spawn(listen_forever(self.config.clone(), notified));
        let replication = Replication {
            config: self.config,
            registry,
            client: None,
            leader: None,
            unsent: HashMap::new(),
            eviction_window: max_silence + period,
            evict_from: Instant::now(),
            heard_at: Instant::now(),
        };
        self.runtime.spawn(replication.run(changes, notifications, period));
    }
}

/// What the listener hands over: an agent whose row changed, or a (re)connection after which
/// anything may have changed unseen.
enum Notice {
    Changed(String),
    Listening,
}

struct Replication {
    config: Server,
    registry: Arc<Registry>,
    /// The connection writes and reads go over; `None` after it broke.
    client: Option<Client>,
    /// The session holding [`LEADER_LOCK`] while this replica leads.
    leader: Option<Client>,
    /// This replica's changes not stored yet, the newest per agent.
    unsent: HashMap<String, Change>,
    /// How long a row may go without a heartbeat before the leader evicts it.
    eviction_window: Duration,
    /// Not before then: a window after taking the lead or after the store came back, so that
    /// every replica stored the heartbeats it kept meanwhile (an outage silences every row).
    evict_from: Instant,
    /// When the store last told this replica every agent's silence (or, while it is away,
    /// when the silence it could not tell was last made up for).
    heard_at: Instant,
}

impl Replication {
    async fn run(mut self, mut changes: mpsc::UnboundedReceiver<Change>, mut notices: mpsc::UnboundedReceiver<Notice>, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            let outcome = tokio::select! {
                change = changes.recv() => match change {
                    Some(change) => {
                        self.take(change);
                        self.drain(&mut changes);
                        self.write().await
                    }
                    None => return,
                },
                Some(notice) = notices.recv() => {
                    // Every notice already queued is taken with this one: one read for all of
                    // them, so that a burst (10,000 agents registering) is not 10,000 round
                    // trips that a later change waits behind.
                    let (mut changed, mut reconnected) = (HashSet::new(), false);
                    let mut next = Some(notice);
                    while let Some(notice) = next {
                        match notice {
                            Notice::Changed(agent_id) => { changed.insert(agent_id); }
                            Notice::Listening => reconnected = true,
                        }
                        next = notices.try_recv().ok();
                    }
                    match self.follow(changed).await {
                        Ok(()) if reconnected => self.reconcile(&mut changes).await,
                        followed => followed,
                    }
                }
                _ = ticks.tick() => {
                    let ticked = self.tick(&mut changes).await;
                    if ticked.is_err() {
                        // Every moment since the store was last read, however the periods went.
                        self.registry.store_unheard(self.heard_at.elapsed());
                        self.heard_at = Instant::now();
                    }
                    ticked
                }
            };
            match outcome {
                Ok(()) if failing => {
                    failing = false;
                    self.evict_from = Instant::now() + self.eviction_window;
                    tracing::info!("PostgreSQL answers again: registrations are shared again");
                }
                Ok(()) => {}
                Err(e) => {
                    if !failing {
                        tracing::warn!(
                            unsent = self.unsent.len(),
                            "cannot share registrations for now (serving from memory, retrying every period): {e}"
                        );
                    }
                    failing = true;
                    self.client = None;
                }
            }
        }
    }

    fn take(&mut self, change: Change) {
        self.unsent.insert(change.agent_id().to_owned(), change);
    }

    fn drain(&mut self, changes: &mut mpsc::UnboundedReceiver<Change>) {
        while let Ok(change) = changes.try_recv() {
            self.take(change);
        }
    }

    async fn client(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.config).await?);
        }
        Ok(self.client.as_mut().expect("connected"))
    }

    /// Stores the unsent changes in one transaction, each announced.
    async fn write(&mut self) -> Result<()> {
        if self.unsent.is_empty() {
            return Ok(());
        }
        let unsent: Vec<Change> = self.unsent.values().cloned().collect();
        timed(async {
            let tx = self.client().await?.transaction().await.map_err(failed("begin storing registrations"))?;
            for change in &unsent {
                match change {
                    Change::Registered { registration, caller } => {
                        let json = serde_json::to_string(registration).expect("a registration serializes");
                        tx.execute(
                            "INSERT INTO toolmesh_agents (agent_id, identity, entity, registration) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (agent_id) DO UPDATE SET identity = $2, entity = $3, registration = $4, last_seen = now()",
                            &[&registration.agent_id, &caller.identity, &caller.entity, &json],
                        )
                        .await
                        .map_err(failed("store a registration"))?;
                    }
                    Change::Removed { agent_id } => {
                        tx.execute("DELETE FROM toolmesh_agents WHERE agent_id = $1", &[agent_id])
                            .await
                            .map_err(failed("remove a registration"))?;
                    }
                }
                tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &change.agent_id()]).await.map_err(failed("announce a registration"))?;
            }
            tx.commit().await.map_err(failed("commit the registrations"))
        })
        .await?;
        // Changes made meanwhile were received after `unsent` was copied: keep those.
        for change in unsent {
            if self.unsent.get(change.agent_id()).is_some_and(|held| same(held, &change)) {
                self.unsent.remove(change.agent_id());
            }
        }
        Ok(())
    }

    /// Takes these agents' rows as other replicas (or this one) left them, in one read: a row
    /// is adopted, an agent with no row forgotten.
    async fn follow(&mut self, agent_ids: HashSet<String>) -> Result<()> {
        // An agent with a newer change of this replica's on its way to the store keeps that.
        let wanted: Vec<String> = agent_ids.into_iter().filter(|id| !self.unsent.contains_key(id)).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let rows = timed(async {
            let client = self.client().await?;
            client
                .query(
                    &format!("SELECT agent_id, identity, entity, registration, {SILENCE_MS} FROM toolmesh_agents WHERE agent_id = ANY($1)"),
                    &[&wanted],
                )
                .await
                .map_err(failed("read registrations"))
        })
        .await?;
        let mut found = HashSet::with_capacity(rows.len());
        for row in &rows {
            found.insert(row.get::<_, String>(0));
            if let Some(s) = stored(row) {
                self.registry.adopt(s.registration, s.caller, s.silent);
            }
        }
        for agent_id in wanted.iter().filter(|id| !found.contains(*id)) {
            self.registry.forget(agent_id, false);
        }
        Ok(())
    }

    /// Once a period: the unsent changes, then this replica's heartbeats in one statement, then
    /// every agent's silence (learning what was missed); the leader evicts.
    async fn tick(&mut self, changes: &mut mpsc::UnboundedReceiver<Change>) -> Result<()> {
        self.drain(changes);
        self.write().await?;
        let beaten = self.registry.take_beaten();
        if !beaten.is_empty() {
            let flushed = timed(async {
                self.client()
                    .await?
                    .execute("UPDATE toolmesh_agents SET last_seen = now() WHERE agent_id = ANY($1)", &[&beaten])
                    .await
                    .map_err(failed("store the heartbeats"))
            })
            .await;
            if let Err(e) = flushed {
                // Kept for the next period: the heartbeats are not lost to a blip.
                self.registry.beaten_again(beaten);
                return Err(e);
            }
        }
        self.reconcile(changes).await?;
        self.lead().await
    }

    /// Reads every agent's silence: newer heartbeats are taken, registrations this replica
    /// missed are fetched, those the store no longer holds dropped.
    async fn reconcile(&mut self, changes: &mut mpsc::UnboundedReceiver<Change>) -> Result<()> {
        let read_at = Instant::now();
        let rows = timed(async {
            self.client()
                .await?
                .query(&format!("SELECT agent_id, {SILENCE_MS} FROM toolmesh_agents"), &[])
                .await
                .map_err(failed("read the heartbeats"))
        })
        .await?;
        self.heard_at = read_at;
        let silences: Vec<(String, Duration)> = rows.iter().map(|row| (row.get(0), silence(row.get(1)))).collect();
        let missing = self.registry.seen(&silences);
        // A change sent before the read may still be in the channel: it counts as unsent.
        self.drain(changes);
        let stored: HashSet<String> = silences.into_iter().map(|(id, _)| id).collect();
        let unsent: HashSet<String> = self.unsent.keys().cloned().collect();
        self.registry.forget_unstored(&stored, read_at, &unsent);
        self.follow(missing.into_iter().collect()).await
    }

    /// Takes the lead when nobody holds it; leading, evicts the rows silent too long.
    async fn lead(&mut self) -> Result<()> {
        if self.leader.as_ref().is_some_and(Client::is_closed) {
            self.leader = None;
            tracing::warn!("lost the eviction lead with its PostgreSQL session");
        }
        if self.leader.is_none() {
            let session = timed(connect(&self.config)).await?;
            let row = timed(async {
                session.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]).await.map_err(failed("take the lead"))
            })
            .await?;
            if !row.get::<_, bool>(0) {
                return Ok(());
            }
            tracing::info!("this replica evicts silent agents for the mesh (holds the PostgreSQL lead)");
            self.leader = Some(session);
            self.evict_from = self.evict_from.max(Instant::now() + self.eviction_window);
        }
        if Instant::now() < self.evict_from {
            return Ok(());
        }
        let window = self.eviction_window.as_secs_f64();
        let evicted = timed(async {
            let tx = self.client().await?.transaction().await.map_err(failed("begin an eviction"))?;
            let rows = tx
                .query("DELETE FROM toolmesh_agents WHERE last_seen < now() - make_interval(secs => $1) RETURNING agent_id", &[&window])
                .await
                .map_err(failed("evict silent agents"))?;
            let evicted: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
            for agent_id in &evicted {
                tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, agent_id]).await.map_err(failed("announce an eviction"))?;
            }
            tx.commit().await.map_err(failed("commit an eviction"))?;
            Ok(evicted)
        })
        .await?;
        for agent_id in evicted {
            self.registry.forget(&agent_id, true);
        }
        Ok(())
    }
}

/// Whether two changes of one agent are the same (so a stored one may leave the unsent).
fn same(a: &Change, b: &Change) -> bool {
    match (a, b) {
        (Change::Registered { registration: r1, caller: c1 }, Change::Registered { registration: r2, caller: c2 }) => r1 == r2 && c1 == c2,
        (Change::Removed { .. }, Change::Removed { .. }) => true,
        _ => false,
    }
}

/// The silence of a row in milliseconds, as a column.
const SILENCE_MS: &str = "(extract(epoch FROM now() - last_seen) * 1000)::bigint";

fn silence(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A row of (agent_id, identity, entity, registration, silence); `None` (logged) when its
/// registration cannot be read.
fn stored(row: &tokio_postgres::Row) -> Option<Stored> {
    let agent_id: String = row.get(0);
    match serde_json::from_str::<RegisterRequest>(row.get(3)) {
        Ok(registration) => {
            Some(Stored { registration, caller: Caller { identity: row.get(1), entity: row.get(2) }, silent: silence(row.get(4)) })
        }
        Err(e) => {
            tracing::warn!(agent_id = %toolmesh_core::text::Escaped(&agent_id), "ignoring a stored registration this registry cannot read: {e}");
            None
        }
    }
}

async fn connect(config: &Server) -> Result<Client> {
    let (client, connection) = config.connect().await.map_err(failed("connect"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection closed: {e}");
        }
    });
    Ok(client)
}

async fn timed<T>(operation: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(OPERATION_TIMEOUT, operation).await.unwrap_or_else(|_| {
        Err(Error::new(ErrorKind::RegistryUnavailable, format!("PostgreSQL did not answer within {OPERATION_TIMEOUT:?}")))
    })
}

/// Keeps one connection LISTENing on [`CHANNEL`], handing each notification over, and a
/// [`Notice::Listening`] after each (re)connection.
async fn listen_forever(config: Server, notices: mpsc::UnboundedSender<Notice>) {
    let mut pause = RECONNECT_MIN;
    while !notices.is_closed() {
        if let Ok((client, mut connection)) = config.connect().await {
            let mut listen = Some(tokio::spawn(async move { client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map(|()| client) }));
            let mut _listening = None;
            loop {
                tokio::select! {
                    message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                        Some(Ok(AsyncMessage::Notification(n))) => { let _ = notices.send(Notice::Changed(n.payload().to_owned())); }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                    joined = async { listen.as_mut().expect("guarded").await }, if listen.is_some() => {
                        listen = None;
                        match joined {
                            Ok(Ok(client)) => {
                                _listening = Some(client);
                                pause = RECONNECT_MIN;
                                let _ = notices.send(Notice::Listening);
                            }
                            _ => break,
                        }
                    }
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}
