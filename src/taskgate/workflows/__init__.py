"""Workflows: graphs of typed nodes, their templates, and the plan of what runs next.

The modules here are pure (no database, no HTTP): ``node_types`` (config schemas),
``graph_validation`` (bodies into a ``graph``), ``templating`` (Jinja in ``template_sandbox``)
and ``planner`` (DAG scheduling).
"""
