"""Synthetic demo data: realistic work-and-cancer situations, loaded idempotently."""
