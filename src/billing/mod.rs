//! Billing-store adapters, one file per provider (Stripe, RevenueCat, Paddle, Whop): signature
//! checks and event normalisation. Built by the billing issue.
