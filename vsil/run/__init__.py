"""vsil/run."""
