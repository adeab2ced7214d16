//! The roles one binary can run as. Below every layer that asks which one it is.

/// What a process does: serve the API, run background work, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// API and worker in one process (the default).
    All,
    /// HTTP API only: no job processors, no schedulers.
    Api,
    /// Job processors and schedulers; serves only /health, /ready and /metrics.
    Worker,
}

impl Role {
    pub fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    pub fn runs_worker(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}
