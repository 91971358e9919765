"""Quarantine: durable storage of held messages and retained originals, release, admin UI."""
