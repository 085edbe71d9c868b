//! prise-hub: sessions, rooms, presence, ordered and durable publishing.
#![forbid(unsafe_code)]

pub mod store;
