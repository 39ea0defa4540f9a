//! Tests for verify (to be written).
