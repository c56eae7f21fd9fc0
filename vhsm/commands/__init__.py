"""Excrypt commands: catalog.py lists them; one module per family holds the handlers."""
