"""Imported by the worker pool's forkserver (``gateway.server``): the document libraries and
the sanitizers' caches (``preload_libraries``) are then in the forkserver once, and every
worker it forks starts with them, sharing their pages, instead of importing them again.

Workers are replaced after ``workers.max_jobs`` messages, on a crash and on reload: with the
imports done here a replacement starts in a fraction of the time (issue 13: at the default of
500 messages per worker, importing in each new worker cost about 0.9 ms of CPU per 5 KB
message).
"""

from __future__ import annotations

import gc

from gateway.sanitizers import preload_libraries

preload_libraries()

# Everything imported so far lives as long as the forkserver: out of the collector's sight,
# a worker's first collections do not walk (and so copy, page by page) the inherited heap.
gc.collect()
gc.freeze()
