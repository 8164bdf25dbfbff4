"""Pure render layer: spec in -> Kubernetes manifests (dicts), nats-server config text and JetStream
configs out. No I/O: no Kubernetes, no network, no files; the apply layer does all of that."""
