//! Operating tollgate: dependency checks (shared by `/ready` and `tollgate check`) and metrics.

pub mod checks;
pub mod metrics;
