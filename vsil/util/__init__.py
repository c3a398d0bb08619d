"""vsil/util."""
