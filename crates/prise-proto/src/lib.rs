//! prise-proto: the wire protocols of prise, without I/O.

#![forbid(unsafe_code)]

pub mod engineio;
pub mod socketio;
