"""Fleet Lattice: a kopf operator that runs a fleet's messaging on NATS."""
