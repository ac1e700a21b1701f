"""A worker process of the parallel compile: ``python -m pccc.backends.triton.jit_worker``
(started by :mod:`.jit_pool`, which it serves over stdin and stdout)."""

from pccc.backends.triton.jit_pool import worker_main

worker_main()
