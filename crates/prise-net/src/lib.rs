//! prise-net
