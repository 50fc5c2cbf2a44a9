// The front door's host routing in front of a stand-in app (an engine that knows of one running
// sandbox): what a gateway's name tells a caller about sandboxes before and after a token.
import { createServer, request as httpRequest, type Server } from "node:http";
import { type AddressInfo, connect as netConnect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../engine/engine.js";
import { type Listener, listenConnect } from "../listen.js";
import { tunnelHostRouter } from "./host-router.js";
import { IngressTokens, randomTokenKey } from "./tokens.js";
import { TunnelDomain } from "./tunnel-domain.js";

const DOMAIN = "sbx.test";
const LIVE = "sb-live";
const GONE = "sb-gone";
const PORT = 8000;

describe("a tunnel domain's gateway names", () => {
  const tokens = new IngressTokens(randomTokenKey());
  let app: Server;
  let front: Listener;

  beforeAll(async () => {
    app = createServer((req, res) => res.end(`app saw ${req.headers.host}`));
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    const appPort = (app.address() as AddressInfo).port;
    // One running sandbox exposing PORT; GONE is not (ended, or never was).
    const engine = {
      sandboxes: new Map([[LIVE, { running: true, spec: { ports: [PORT] } }]]),
    } as unknown as Engine;
    const dialer = { dial: async () => netConnect(appPort, "127.0.0.1") };
    front = await listenConnect(() => {}, [], {
      hostRouter: tunnelHostRouter({
        domain: new TunnelDomain({ domain: DOMAIN, scheme: "http" }),
        engine,
        dialer,
        tokens,
      }),
    });
  });
  afterAll(async () => {
    await front.close();
    await new Promise((resolve) => app.close(resolve));
  });

  const get = (host: string, authorization?: string) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest(
        {
          host: "127.0.0.1",
          port: front.port,
          headers: { host, ...(authorization ? { authorization } : {}) },
          agent: false,
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            text += d;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on("error", reject);
      req.end();
    });
  const gateway = (id: string) => `${PORT}-${id}-auth.${DOMAIN}`;

  it("answer 401 alike whether or not the sandbox runs; once a token verifies, 404 for one that does not", async () => {
    const live = await get(gateway(LIVE));
    expect(live.status).toBe(401);
    expect(await get(gateway(GONE))).toEqual(live);
    const bearer = async (id: string) => {
      const { token } = await tokens.issue({ sandboxId: id, port: PORT, audience: "connect", expiresInMs: 60_000 });
      return `Bearer ${token}`;
    };
    expect(await get(gateway(LIVE), await bearer(LIVE))).toEqual({ status: 200, text: `app saw ${gateway(LIVE)}` });
    expect((await get(gateway(GONE), await bearer(GONE))).status).toBe(404);
    // A token for another sandbox is no token here.
    expect((await get(gateway(GONE), await bearer(LIVE))).status).toBe(401);
    // An open tunnel's name asks for no token: it says 404 at once.
    expect((await get(`${PORT}-${GONE}.${DOMAIN}`)).status).toBe(404);
  });
});
