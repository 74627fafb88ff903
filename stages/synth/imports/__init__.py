"""Readers of published trajectory formats, one module each; `registry` lists them for the CLI."""
