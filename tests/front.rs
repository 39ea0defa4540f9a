//! Tests for front (to be written).
