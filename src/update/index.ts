/** The unscheduled-update cycle: policy windows, the fleet lock, events, counters and the journaled cycle. */
export { UpdateCycle, type CommandRunner, type CyclePolicy, type StatusSource } from "./cycle.ts";
export { type Evacuator, type EvacuateRequest, type EvacuationReport, type ReturnReport, missingEvacuator } from "./evacuator.ts";
export { EventLog, formatEvent, type UpdateEvent } from "./events.ts";
export { UpdateMetrics } from "./metrics.ts";
export { UpdateWindows } from "./window.ts";
export { createUpdateService, type UpdateService, type UpdateView } from "./service.ts";
export { RecordingTestEvacuator } from "./test-evacuator.ts";
export { EtcdLock } from "./etcd-lock.ts";
export { EtcdGateway } from "./etcd-gateway.ts";
export { FleetLock } from "./fleetlock.ts";
