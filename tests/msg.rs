//! Tests for msg (to be written).
