"""Alembic migrations, shipped inside the package so ``Database.upgrade()``
works from an installed wheel without an ``alembic.ini``."""
