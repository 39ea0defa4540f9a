//! Tests for run (to be written).
