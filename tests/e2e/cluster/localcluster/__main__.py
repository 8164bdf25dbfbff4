"""`python -m localcluster ...` (with tests/e2e/cluster on PYTHONPATH); tests/e2e/cluster/cluster is the same
command without it."""

from .cli import main

raise SystemExit(main())
