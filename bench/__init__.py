"""Reproducible benchmarks against real servers; ``python -m bench`` runs them all."""
