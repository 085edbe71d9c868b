//! prise-proto: the wire protocols of prise, without I/O.
