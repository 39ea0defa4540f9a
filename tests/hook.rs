//! Tests for hook (to be written).
