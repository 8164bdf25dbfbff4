"""The silo agent: takes its silo's install requests off the hub's FLEET_INSTALL work queue (through the
silo's leaf), runs a pluggable install plan, and reports progress/done/failed/scrubbed back over JetStream.

Nobody in the silo runs a command: the agent is the silo's only moving part of an install.

    service       the process: connect to the leaf, boot event, heartbeat, serve, stop on SIGTERM
    consumer      bind to the operator-made pull consumer, fetch, keep a message in progress
    worker        one message: validate, run the plan under its deadline, report, record, ack
    reports       progress/done/failed/scrubbed, stored by JetStream with a stable Nats-Msg-Id
    ledger        finished requests and the installed version, kept across restarts
    heartbeat     boot event and the silo's state in FLEET_STATE
    plan          what a plan is (steps, scrub); command_plan and builtin_plan are the two plans
    manifests     builtin plan, pure: templates -> labelled manifests; rollout and pods from status
    cluster       builtin plan, Kubernetes: server-side apply, get, delete
"""
