/** Ingress operations for the Effect API (`Network.tunnels`, …). */
export {
  type ConnectCredentials,
  type ConnectTokenOptions,
  connectPort as connect,
  createConnectToken,
  createServiceToken,
  getTunnels as tunnels,
  type ServiceToken,
  type Tunnel,
} from "./network-ops.js";
export type { PortConnection } from "./port-dialer.js";
