//! Pure rules, no I/O: money and prices, plans, ledger math, subscription and dunning state
//! machines. One file per domain of DESIGN.md (identity, ledger, billing, recovery, jobs)
//! arrives with the issue that builds it; each file carries its own unit tests.
