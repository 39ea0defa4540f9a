//! orch-land.
