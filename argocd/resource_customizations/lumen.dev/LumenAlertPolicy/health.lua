-- Argo CD health check for lumen.dev LumenAlertPolicy (docs/argocd.md says how to install it).
--
-- The Lumen operator writes status.observedGeneration and two conditions, Ready and Valid, each
-- with its own observedGeneration (operator/lumen_alerting/operator/status.py, docs/operator.md):
--   Valid  True SpecValid | False InvalidSpec (the message lists every problem)
--   Ready  True Applied   | False InvalidSpec, ApplyFailed, OwnershipConflict or Retrying
-- Healthy:     Ready=True for the current generation.
-- Progressing: no status yet, a status of an older generation, Ready missing or Unknown, or the
--              policy is being deleted (the operator's finalizer is still on it).
-- Degraded:    Valid=False (the message is the problems) or Ready=False (reason: message).
-- Written for Lua 5.1 (Argo CD runs gopher-lua) with base functions only.
local hs = {}

local function find_condition(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == wanted then
      return condition
    end
  end
  return nil
end

local function describe(condition)
  local reason = condition.reason or ""
  local message = condition.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  return reason
end

local generation = obj.metadata.generation

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted: waiting for the Lumen operator to release the policy"
  return hs
end

local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Lumen operator to reconcile the policy"
  return hs
end

if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Lumen operator to reconcile generation " .. tostring(generation)
    .. " (status is for generation " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local valid = find_condition(status.conditions, "Valid")
if valid ~= nil and valid.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(valid)
  return hs
end

local ready = find_condition(status.conditions, "Ready")
if ready ~= nil then
  if ready.status == "True" then
    hs.status = "Healthy"
    hs.message = describe(ready)
    return hs
  end
  if ready.status == "False" then
    hs.status = "Degraded"
    hs.message = describe(ready)
    return hs
  end
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
