//! Crash points for the fault tests. `TOLLGATE_FAULT_ABORT_AT=<point>` makes the process abort
//! — no unwinding, no shutdown, no flush: what `kill -9` does — the moment it reaches that
//! point, so a test can crash it at the one instant a race would otherwise have to hit (e.g.
//! after an effect committed and before its `Idempotency-Key` answer was stored). Unset, a
//! point costs one read of a value parsed once. Never set it outside tests.

use std::sync::OnceLock;

/// The environment variable naming the point to abort at.
pub const ENV: &str = "TOLLGATE_FAULT_ABORT_AT";

/// After a request's effect committed, before its `Idempotency-Key` answer is stored.
pub const BEFORE_IDEMPOTENT_ANSWER: &str = "idempotency.before_answer";

/// Aborts the process if `TOLLGATE_FAULT_ABORT_AT` names `name`.
pub fn point(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()));
    if at.as_deref() == Some(name) {
        eprintln!("{ENV}={name}: aborting");
        std::process::abort();
    }
}
