//! mlc-stripe-sim
