//! The metered AI gateway (docs/gateway.md): a metered [`call::Call`] (plan, limits, hold,
//! provider, settle), model resolution, the providers' wire formats, the upstream client with
//! fallbacks, and the [`meter::Meter`] that settles each call and writes its usage record.

pub mod anthropic;
pub mod call;
pub mod cap;
pub mod chat_request;
pub mod chat_to_anthropic;
pub mod chat_to_gemini;
pub mod format;
pub mod gemini;
pub mod limits;
pub mod messages;
pub mod meter;
pub mod metrics;
pub mod mock;
pub mod models;
pub mod openai;
pub mod route;
pub mod sse;
pub mod upstream;
pub mod usage;

pub use call::{Call, CallContext, CallError, Gateway};
pub use upstream::Upstream;
