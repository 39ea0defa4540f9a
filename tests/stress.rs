//! Tests for stress (to be written).
