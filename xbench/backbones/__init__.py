"""Backbones. Importing this package registers the built-in backbones."""
