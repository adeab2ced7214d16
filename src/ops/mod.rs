//! Operating tollgate: dependency checks (shared by `/ready` and `tollgate check`), metrics,
//! backups and restores, and error reporting.

pub mod backup;
pub mod checklist;
pub mod checks;
pub mod fault;
pub mod import;
pub mod limiter;
pub mod metrics;
pub mod migrate_data;
pub mod seed;
pub mod sentry;
