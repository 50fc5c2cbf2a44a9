/**
 * @sbx/server-kit/ingress (Node): how clients outside reach sandbox ports — ingress tokens
 * (browser-safe, tokens.ts), the gateway's checks (browser-safe, gateway-auth.ts), the
 * node:http gateway and its dialer seam (gateway.ts), and the engine's ingress seam over
 * real listeners (listener-ingress.ts), and the tunnel route on the API's own port
 * (tunnel-route.ts over tunnel-session.ts: `sb.connect`, `sb.tunnel`, many connections over
 * one WebSocket or upgraded socket), shared by the sbx server and the fake.
 * Under a tunnel domain (tunnel-domain.ts, browser-safe: exported from "@sbx/server-kit"),
 * sandbox ports are host names on the API's port instead, which the front door routes
 * (host-router.ts).
 */

export {
  type GatewayOptions,
  type GatewayRoute,
  IngressDialError,
  type IngressDialer,
  IngressGateway,
} from "./gateway.js";
export {
  authorizeRequest,
  type GatewayDecision,
  type GatewayRequestHead,
  type GatewayTarget,
  TOKEN_PARAM,
  tokenCookieName,
  VERIFIED_USER_DATA,
} from "./gateway-auth.js";
export { type TunnelHostRouterOptions, tunnelHostRouter } from "./host-router.js";
export { MAX_USER_METADATA_BYTES } from "./limits.js";
export {
  ListenerIngress,
  type ListenerIngressOptions,
  type PlaneTunnel,
  type TunnelPlane,
} from "./listener-ingress.js";
export {
  IngressTokens,
  type IssuedToken,
  randomTokenKey,
  TOKEN_KEY_BYTES,
  type TokenAudience,
  type TokenCheck,
  type TokenGrant,
  type TokensOptions,
  type VerifiedToken,
} from "./tokens.js";
export { DEFAULT_TUNNEL_LIMITS, TunnelBudget, type TunnelLimits } from "./tunnel-budget.js";
export { type TunnelRouteOptions, tunnelRoute } from "./tunnel-route.js";
export { type TunnelChannel, TunnelSession, type TunnelSessionOptions } from "./tunnel-session.js";
