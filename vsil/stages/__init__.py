"""vsil/stages."""
