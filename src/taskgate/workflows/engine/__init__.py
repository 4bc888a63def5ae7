"""The workflow engine: planning what runs next and running one node, as queue jobs."""
