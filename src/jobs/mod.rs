//! Durable jobs: the queue, the worker loop, the cron scheduler, kill switches
//! (`jobs/kinds/<domain>.rs` for the handlers). Built by the jobs issue; the worker role
//! already exists (`serve --role worker`) and serves only /health, /ready and /metrics.
