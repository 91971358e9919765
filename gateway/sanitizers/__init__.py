"""Content sanitizers, one per content class. See ``gateway.sanitizers.base``."""
