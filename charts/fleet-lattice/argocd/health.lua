-- Argo CD health of the fleet.lattice.dev kinds: FleetHub, SiloLeaf, FleetStream, SiloInstall, FleetUser.
-- One script for all of them (argocd-cm key resource.customizations.health.fleet.lattice.dev_<Kind>), so the
-- rules cannot drift apart. Lua 5.1 (Argo CD embeds gopher-lua); tests/unit/test_argocd_health.py runs it.
--
-- Healthy:     Ready=True and the operator has seen the current spec (status.observedGeneration == generation).
-- Progressing: the operator is behind, Ready is absent/Unknown, Progressing=True, an install is under way,
--              or Ready=False for a reason the operator is still working on (waiting for a hub, a leaf...).
-- Degraded:    Ready=False for a reason that needs a person (see FAILED), or a FleetHub not Ready with
--              Degraded=True (a server failing health checks) unless the operator is rolling it on purpose.

-- Ready=False reasons that will not fix themselves without a spec change or outside help.
local FAILED = {
  FleetHub = {},
  SiloLeaf = {DuplicateSilo = true},
  FleetStream = {ImmutableFieldChanged = true, JetStreamError = true},
  SiloInstall = {Failed = true, TimedOut = true},
  FleetUser = {DuplicateConsumer = true},
}
-- SiloInstall phases during which the install is still moving.
local ACTIVE_PHASES = {Pending = true, Requested = true, InProgress = true, Scrubbing = true}

local function condition(status, type_)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function health(status_, message)
  return {status = status_, message = message}
end

local function assess(o)
  local status = o.status or {}
  local generation = o.metadata.generation
  local ready = condition(status, "Ready")
  local message = (ready ~= nil and ready.message) or ""

  -- Anything the status says about an older spec is stale: wait for the operator first.
  local observed = status.observedGeneration
  if observed == nil or (generation ~= nil and observed < generation) then
    return health("Progressing", "waiting for the operator to observe generation " .. tostring(generation))
  end
  local assessed = ready ~= nil and ready.observedGeneration or nil
  if assessed ~= nil and generation ~= nil and assessed < generation then
    return health("Progressing", "waiting for the operator to assess generation " .. tostring(generation))
  end

  if ready ~= nil and ready.status == "False" and (FAILED[o.kind] or {})[ready.reason] then
    return health("Degraded", message)
  end
  local progressing = condition(status, "Progressing")
  if o.kind == "FleetHub" and (ready == nil or ready.status ~= "True") then
    -- A roll the operator started takes servers down on purpose: that is progress, not damage.
    if progressing ~= nil and progressing.status == "True" and progressing.reason == "RestartRequired" then
      return health("Progressing", message ~= "" and message or (progressing.message or ""))
    end
    local degraded = condition(status, "Degraded")
    if degraded ~= nil and degraded.status == "True" then
      return health("Degraded", message ~= "" and message or (degraded.message or ""))
    end
  end

  if ready == nil or ready.status == "Unknown" then
    return health("Progressing", message ~= "" and message or "waiting for the Ready condition")
  end
  if progressing ~= nil and progressing.status == "True" then
    return health("Progressing", message ~= "" and message or (progressing.message or ""))
  end
  if o.kind == "SiloInstall" and status.phase ~= nil and ACTIVE_PHASES[status.phase] then
    return health("Progressing", message)
  end
  if ready.status == "True" then
    return health("Healthy", message)
  end
  -- Ready=False for a reason the operator retries on its own (LeafNotConnected, HubNotFound, RetryScheduled...).
  return health("Progressing", message)
end

return assess(obj)
