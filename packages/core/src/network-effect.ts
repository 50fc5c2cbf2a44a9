/** Ingress operations for the Effect API (`Network.tunnels`, …). */
export {
  type ConnectCredentials,
  type ConnectTokenOptions,
  createConnectToken,
  createServiceToken,
  getTunnels as tunnels,
  type ServiceToken,
  type Tunnel,
} from "./network-ops.js";
