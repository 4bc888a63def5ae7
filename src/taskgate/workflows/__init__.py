"""Workflows: graphs of typed nodes, their templates, and the plan of what runs next.

The modules here are pure (no database, no HTTP): ``node_types`` (config schemas),
``graph`` (validation), ``templating`` (sandboxed Jinja) and ``planner`` (DAG scheduling).
"""
