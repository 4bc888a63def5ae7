"""Workflow definitions: the graph language (node types, templates, validation) and
the use cases that create, version and read workflows."""
