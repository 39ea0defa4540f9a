//! Tests for doctor (to be written).
