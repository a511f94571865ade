//! The umbrella binary's commands that are more than a call into one service crate: the
//! embedded stack (`up`), the simulator commands (`sim`) and dead-letter replay (`dlq`).
//! A library too, so the end-to-end tests run the very same `up`.

pub mod auth_cmd;
pub mod calibrate;
pub mod demo_auth;
pub mod dlq;
pub mod ood;
pub mod sim;
pub mod up;
