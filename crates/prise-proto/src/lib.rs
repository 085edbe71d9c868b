//! prise-proto: the wire protocols of prise, without I/O.

pub mod framing;
pub mod hexdump;
pub mod transfer;
