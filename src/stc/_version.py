"""The package version, in a module of its own so that any stc module can read it without importing the package."""

__version__ = "0.1.0"
