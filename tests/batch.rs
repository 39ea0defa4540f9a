//! Tests for batch (to be written).
