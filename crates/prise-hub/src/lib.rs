//! prise-hub
