// Seed 000's mrcp-agent v2 snippet, run by tests/e2e/test_seed_journey.py. Between the "seed" markers it is
// the seed's text with README.md's lines for the silo's credential (FLEET_NKEY_SEED from the pod's environment,
// Secret siloleaf-<silo>-local); the test points the connect URL at the leaf's Service as the host reaches it.
// Around it, the harness: the values the real agent has in scope (from env) and, since this run is one-shot,
// an async body and a drain at the end (the agent itself keeps its connection).
const SILO = process.env.SILO;
const eventType = process.env.EVENT_TYPE;
const pods = Number(process.env.PODS);
const health = process.env.HEALTH;
const data = JSON.parse(process.env.EVENT_DATA);

(async () => {
// --- seed
// mrcp-agent v2 — publishes state + events to NATS leaf
const { connect, StringCodec, nkeyAuthenticator } = require('nats');
const sc = StringCodec();
const authenticator = nkeyAuthenticator(new TextEncoder().encode(process.env.FLEET_NKEY_SEED));
const nc = await connect({ servers: ['nats://ct-fac-leaf.eose-entry.svc.cluster.local:4222'], authenticator });

// Publish silo state (replaces /breath HTTP)
await nc.publish(
  `fleet.state.${SILO}`,
  sc.encode(JSON.stringify({ pods, health, gamma1: 14.134725141734693, ts: Date.now() }))
);

// Publish event (replaces campfire:events XADD)
await nc.publish(
  `fleet.events.${SILO}.${eventType}`,
  sc.encode(JSON.stringify({ silo: SILO, event: eventType, data, gamma1: 14.134725141734693 }))
);
// --- seed end
await nc.drain();
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
