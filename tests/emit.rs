//! Tests for emit (to be written).
