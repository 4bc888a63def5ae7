"""Audit records of every mutation and authentication event."""
