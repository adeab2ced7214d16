//! The metered AI gateway: one adapter per provider (OpenAI, Anthropic, Gemini), request and
//! stream translation, usage extraction. Built by the gateway issue.
