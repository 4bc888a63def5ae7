"""Accounts, credentials and the principal behind every request."""
