//! ml-connector
