"""Mugaika (無害化): an SMTP relay that makes internet mail harmless before it enters LGWAN."""

__version__ = "0.1.0"
