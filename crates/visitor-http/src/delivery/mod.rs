//! Webhook delivery (contract §10.2): the Standard Webhooks signature, and the sender — one
//! background task per instance that claims due deliveries from the store and sends them.

pub(crate) mod sender;
pub(crate) mod signature;
