//! mlc-netsuite
