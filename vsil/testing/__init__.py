"""vsil/testing."""
