"""Harder tasks from an encyclopedia: R1V4's constrained random walk (see `stages.tasks.walk.run`)."""
