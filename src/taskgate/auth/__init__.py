"""Who is calling: credentials (``credentials.py``), the principal they resolve to and the
caches that keep that cheap (``principal.py``). Below ``http/`` and every feature, which all
take a ``Principal``; accounts and keys as resources are ``identity/``'s."""
