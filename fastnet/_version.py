__version__ = "0.1.0"
"""The version: pyproject.toml reads it from here, so ``fastnet --version`` and the metadata agree."""
