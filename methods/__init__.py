"""Methods (installed as xbench.methods). Importing this package registers the built-in methods."""
