"""The incident store (DESIGN.md section 5, seed 003): every alert kept, grouped into incidents
that people acknowledge, resolve and silence from Slack, the REST API and the web page.

- ``records``: the values every layer speaks (pure).
- ``grouping`` and ``lifecycle``: which incident an alert belongs to, and which state changes are
  allowed (pure).
- ``store``: SQLAlchemy 2 over SQLite, PostgreSQL or MySQL/MariaDB, schema by Alembic
  (``migrations``).
- ``actions``: acknowledge, resolve and silence, the same for Slack, the API and the page.
- ``api``, ``openapi`` and ``web``: the HTTP surfaces.
"""
