"""The authorization matrix: every operation, every kind of caller, one expected outcome."""
