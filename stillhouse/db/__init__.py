"""SQLAlchemy models, engine factory and migrations (needs the `db` extra)."""
