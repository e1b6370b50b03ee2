//! Simulation harness for kad.
