//! prise-server
