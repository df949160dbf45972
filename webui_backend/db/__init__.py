"""Storage: SQLAlchemy models, the engine and session factory, and repositories.

Only this package speaks SQLAlchemy.
"""
