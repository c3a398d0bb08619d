"""vsil/training."""
