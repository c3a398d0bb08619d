"""vsil/stages/risk."""
