"""Governance: projects (the workspace every resource belongs to) and who may use them."""
