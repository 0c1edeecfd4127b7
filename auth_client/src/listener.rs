//! The cache's listener: one connection of its own that `LISTEN`s on `auth_pg_invalidate` and
//! hands every notification to the cache, reconnecting when it is lost.
//!
//! While it is not listening the cache serves nothing (see `crate::cache`). A connection that
//! goes silent without closing (a network partition), or whose server backend does not listen
//! (a pooler in transaction mode), is noticed by a heartbeat query, sent every [`HEARTBEAT`]
//! and given as long to answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use auth_core::invalidation::CHANNEL;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls, SimpleQueryMessage};

use crate::Error;
use crate::cache::{Cache, Clock};

/// How often the listener checks that its connection still answers, and how long it waits.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(2);
/// The wait before the first reconnection, doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Notifications waiting at once from which the listener stops reading them one by one and
/// forgets everything instead.
const BURST: usize = 64;

/// Aborts a task when dropped: the listener stops with the last client that shares it, and the
/// listener's connection driver with the listener.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts listening for `cache`, on the Tokio runtime the caller runs in.
pub(crate) fn spawn(
    mut pg: tokio_postgres::Config,
    cache: Arc<Cache>,
) -> Result<AbortOnDrop, Error> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        Error::config(
            "the client cache listens for invalidations on a Tokio task: create the client \
             inside a Tokio runtime, or without a cache",
        )
    })?;
    let name = format!(
        "{} listener",
        pg.get_application_name().unwrap_or("auth_client")
    );
    pg.application_name(&name);
    Ok(AbortOnDrop(runtime.spawn(run(pg, cache))))
}

/// Makes the cache deaf when the listener stops for good: aborted with the last client, or
/// dropped with the runtime it ran on while clients live on elsewhere.
struct DeafOnDrop(Arc<Cache>);

impl Drop for DeafOnDrop {
    fn drop(&mut self) {
        self.0.deaf();
    }
}

async fn run(pg: tokio_postgres::Config, cache: Arc<Cache>) {
    let _deaf_on_exit = DeafOnDrop(Arc::clone(&cache));
    let mut backoff = MIN_BACKOFF;
    loop {
        let listened = listen(&pg, &cache).await;
        cache.deaf();
        if listened {
            backoff = MIN_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects, listens and applies notifications until the connection is lost; true when it got
/// as far as listening.
async fn listen(pg: &tokio_postgres::Config, cache: &Cache) -> bool {
    let Ok((client, mut connection)) = pg.connect(NoTls).await else {
        return false;
    };
    let (sender, mut notifications) = mpsc::unbounded_channel();
    // The connection is driven by its own task, which forwards notifications in order and ends
    // (dropping the sender) when the connection does.
    let _driver = AbortOnDrop(tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(notification) = message
                && sender.send(notification.payload().to_owned()).is_err()
            {
                break;
            }
        }
    }));

    let start = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        let sent = SystemTime::now();
        let row = client
            .query_one("SELECT pg_catalog.clock_timestamp()", &[])
            .await?;
        let received = SystemTime::now();
        let server: SystemTime = row.try_get(0)?;
        Ok::<_, tokio_postgres::Error>(Clock::from_reading(sent, received, server))
    };
    let Ok(Ok(clock)) = tokio::time::timeout(HEARTBEAT, start).await else {
        return false;
    };
    // Everything committed from here on is notified; what was committed before is seen by any
    // query that starts after this point, and nothing is stored from one that started earlier.
    cache.listening(clock);

    // Notifications are applied as they arrive, and the heartbeat runs beside them: a slow
    // answer to it never holds an invalidation back. Whichever ends first ends the connection.
    let apply = async {
        let mut batch = Vec::with_capacity(BURST);
        while notifications.recv_many(&mut batch, BURST).await > 0 {
            // Any role may NOTIFY: a flood of notifications (each of which may cost a pass
            // over the cache) is met with one forgetting of everything per burst, so that a
            // real revocation behind it is applied without delay.
            if batch.len() >= BURST {
                cache.invalidate_burst(batch.len());
            } else {
                for payload in &batch {
                    cache.invalidate(payload);
                }
            }
            batch.clear();
        }
    };
    let beat = async {
        let still_listening = still_listening();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        loop {
            heartbeat.tick().await;
            let answered =
                tokio::time::timeout(HEARTBEAT, client.simple_query(&still_listening)).await;
            // The answer must come from a backend that listens: behind a pooler that hands
            // each statement to any server connection, LISTEN may have been left on another
            // one, and nothing would ever be heard.
            let listening = matches!(&answered, Ok(Ok(messages)) if messages.iter().any(|message| {
                matches!(message, SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
            }));
            if !listening {
                return;
            }
        }
    };
    tokio::select! {
        () = apply => {}
        () = beat => {}
    }
    true
}

/// The heartbeat's query: whether this connection's backend listens on the channel.
fn still_listening() -> String {
    format!(
        "SELECT '{CHANNEL}' OPERATOR(pg_catalog.=) ANY \
         (ARRAY(SELECT pg_catalog.pg_listening_channels()))"
    )
}
