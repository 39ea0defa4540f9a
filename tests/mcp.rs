//! Tests for mcp (to be written).
