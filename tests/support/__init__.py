"""Shared test support: databases, app clients, users."""
