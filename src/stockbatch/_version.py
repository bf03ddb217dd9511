"""The version of stockbatch, in one place (pyproject.toml reads it: ``dynamic = ["version"]``)."""

__version__ = "0.2.0.dev0"
