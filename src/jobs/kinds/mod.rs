//! The job kinds built into tollgate, one file per domain.

pub mod backup;
pub mod billing;
pub mod events;
pub mod ledger;
pub mod maintenance;
pub mod recovery;

use std::sync::OnceLock;

use super::Registry;

/// Every built-in kind. Config schedules may name only these.
pub fn builtin() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut r = Registry::new();
        r.register::<maintenance::Prune>()
            .register::<backup::Backup>()
            .register::<maintenance::Noop>()
            .register::<ledger::Expire>()
            .register::<ledger::PeriodCredits>()
            .register::<billing::ProcessWebhook>()
            .register::<recovery::Sweep>()
            .register::<recovery::SendNudge>()
            .register::<recovery::ApplyIncentive>()
            .register::<crate::store::events::FanOutArgs>()
            .register::<crate::events::fan_out::Deliver>()
            .register::<crate::events::app_jobs::AppJob>()
            .register::<crate::events::email::SendEmail>();
        r
    })
}
