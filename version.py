"""The pack's version (one place: the package, recipes and the registry metadata read it)."""
__version__ = "0.1.0"
