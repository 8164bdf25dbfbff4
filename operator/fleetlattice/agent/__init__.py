"""The silo agent: takes its silo's install requests off the hub's FLEET_INSTALL work queue (through the
silo's leaf), runs a pluggable install plan, and reports progress/done/failed/scrubbed back over JetStream.

Nobody in the silo runs a command: the agent is the silo's only moving part of an install."""
