"""Evaluations of what the assistant says (not how fast its parts run: that is bench/)."""
