//! PostgreSQL LISTEN: an enqueue on any replica wakes this process's idle workers at once
//! (the NOTIFY is sent at commit). SQLite has one process, woken in memory.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::client::Wakers;
use crate::store::Db;
use crate::store::jobs::queue::NOTIFY_CHANNEL;

pub(crate) async fn wake_on_notify(db: Db, wakers: Arc<Wakers>, stop: CancellationToken) {
    let Db::Postgres(pool, _) = db else { return };
    while !stop.is_cancelled() {
        let mut listener = match listen(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for new jobs; polling until it works");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            }
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.recv() => match n {
                    Ok(n) => wakers.wake(n.payload()),
                    Err(e) => {
                        tracing::warn!(error = %e, "job notifications interrupted; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

async fn listen(pool: &sqlx::PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    Ok(listener)
}
