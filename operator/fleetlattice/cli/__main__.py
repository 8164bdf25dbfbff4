"""`python -m fleetlattice.cli`: the same as the `fleetlattice` command."""

import sys

from fleetlattice.cli.main import main

sys.exit(main())
