"""Fleet Lattice benchmarks on the local cluster: `python -m bench` (see README, Performance)."""
