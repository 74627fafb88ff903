"""The trajectory viewer: a run's overview, list and trajectory pages, served or written as a static site.

`site.Site` maps every page path to bytes (one router for both deliveries); `server` serves it on
loopback, `Site.write` writes the same files to a folder that opens from disk.
"""
