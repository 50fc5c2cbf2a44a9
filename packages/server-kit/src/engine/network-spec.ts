/** A sandbox spec's network, as the runtime driver takes it. */
import type { SandboxSpec } from "@sbx/proto";
import type { RuntimeNetworkSpec } from "./runtime-driver.js";

/** The spec's policy, ports (ascending) and TCP probe port (the spec checked already). */
export function networkSpecOf(spec: SandboxSpec): RuntimeNetworkSpec {
  const probe = spec.readinessProbe?.kind;
  return {
    blockNetwork: spec.blockNetwork,
    cidrAllowlist: [...spec.cidrAllowlist],
    ports: [...spec.ports].sort((a, b) => a - b),
    probePort: probe?.case === "tcpPort" ? probe.value : undefined,
  };
}
