"""Imported by the worker pool's fork server, and only there: load the NER model once.

Importing this module calls :func:`dicomscrub.core.workers.preload`, so every
worker forked from the server starts with the default spaCy model and word
lists already in memory. Nothing else should import it.
"""

from .workers import preload

preload()
