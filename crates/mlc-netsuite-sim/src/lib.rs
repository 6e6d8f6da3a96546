//! mlc-netsuite-sim
