//! Crash points for the fault tests. `TOLLGATE_FAULT_ABORT_AT=<point>` makes the process abort
//! — no unwinding, no shutdown, no flush: what `kill -9` does — the moment it reaches that
//! point, so a test can crash it at the one instant a race would otherwise have to hit (e.g.
//! after an effect committed and before its `Idempotency-Key` answer was stored).
//! `TOLLGATE_FAULT_PAUSE_AT=<point>:<ms>` waits there instead, widening that instant so that a
//! SIGKILL at a random moment lands in it often. Unset, a point costs one read of values parsed
//! once. Never set them outside tests.

use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable naming the point to abort at.
pub const ENV: &str = "TOLLGATE_FAULT_ABORT_AT";
/// The environment variable naming a point to pause at, and for how long (`point:ms`).
pub const PAUSE_ENV: &str = "TOLLGATE_FAULT_PAUSE_AT";

/// After a request's effect committed, before its `Idempotency-Key` answer is stored.
pub const BEFORE_IDEMPOTENT_ANSWER: &str = "idempotency.before_answer";

struct Faults {
    abort_at: Option<String>,
    pause_at: Option<(String, Duration)>,
}

fn faults() -> &'static Faults {
    static FAULTS: OnceLock<Faults> = OnceLock::new();
    FAULTS.get_or_init(|| {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Faults {
            abort_at: var(ENV),
            pause_at: var(PAUSE_ENV).and_then(|v| {
                let (point, ms) = v.rsplit_once(':')?;
                Some((point.to_string(), Duration::from_millis(ms.parse().ok()?)))
            }),
        }
    })
}

/// Aborts the process if `TOLLGATE_FAULT_ABORT_AT` names `name`; waits if
/// `TOLLGATE_FAULT_PAUSE_AT` does.
pub async fn point(name: &str) {
    let f = faults();
    if let Some((point, wait)) = &f.pause_at
        && point == name
    {
        tokio::time::sleep(*wait).await;
    }
    if f.abort_at.as_deref() == Some(name) {
        eprintln!("{ENV}={name}: aborting");
        std::process::abort();
    }
}
