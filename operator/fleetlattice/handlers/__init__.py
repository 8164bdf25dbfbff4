"""kopf wiring. Each module registers the handlers of one kind; they only call the apply layer."""
