export { createLocalApp, type AgentInfo, type LocalAppDeps } from "./app.ts";
export { LocalClient, type ExecOutput } from "./client.ts";
