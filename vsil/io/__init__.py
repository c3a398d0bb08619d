"""vsil/io."""
