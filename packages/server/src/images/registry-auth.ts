/**
 * Registry authentication (the distribution spec's token flow, and HTTP basic): reading a
 * WWW-Authenticate challenge, and getting a bearer token for it. Credentials come with each
 * pull and live only as long as it: nothing here stores or logs them.
 */
import type { RegistryCredentials } from "@sbx/server-kit";

export interface Challenge {
  /** "bearer" or "basic" (lowercased). */
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

/**
 * The challenges of a WWW-Authenticate header: `Bearer realm="…",service="…",scope="…"`,
 * `Basic realm="…"`, several of them comma-separated.
 */
export function parseChallenges(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  let i = 0;
  const skipSpace = () => {
    while (i < header.length && /[\s,]/.test(header[i] as string)) i++;
  };
  const token = () => {
    const start = i;
    while (i < header.length && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(header[i] as string)) i++;
    return header.slice(start, i);
  };
  let current: { scheme: string; params: Record<string, string> } | undefined;
  for (;;) {
    skipSpace();
    if (i >= header.length) break;
    const word = token();
    if (word === "") {
      i++;
      continue;
    }
    while (header[i] === " ") i++;
    if (header[i] === "=") {
      i++;
      while (header[i] === " ") i++;
      let value = "";
      if (header[i] === '"') {
        i++;
        while (i < header.length && header[i] !== '"') {
          if (header[i] === "\\" && i + 1 < header.length) i++;
          value += header[i];
          i++;
        }
        i++;
      } else {
        value = token();
      }
      if (current) current.params[word.toLowerCase()] = value;
    } else {
      current = { scheme: word.toLowerCase(), params: {} };
      challenges.push(current);
    }
  }
  return challenges;
}

export const basicAuthorization = (credentials: RegistryCredentials): string =>
  `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`, "utf8").toString("base64")}`;

/**
 * The token URL for a bearer challenge: its realm with `service` and `scope` added. The scope
 * is ours (pull of the one repository) whatever the challenge's says: a registry whose realm is
 * another service's, where the same credentials work, gets no token to push there or to read
 * other repositories.
 */
export function tokenUrl(challenge: Challenge, scope: string): URL {
  const realm = challenge.params.realm;
  if (realm === undefined) throw new Error("the bearer challenge names no realm");
  const url = new URL(realm);
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error(`the token realm ${realm} is not HTTP(S)`);
  if (challenge.params.service !== undefined) url.searchParams.set("service", challenge.params.service);
  url.searchParams.append("scope", scope);
  return url;
}

/** The token in a token endpoint's answer (`token`, or OAuth's `access_token`). */
export function tokenFromAnswer(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const { token, access_token: accessToken } = body as { token?: unknown; access_token?: unknown };
  if (typeof token === "string" && token !== "") return token;
  if (typeof accessToken === "string" && accessToken !== "") return accessToken;
  return undefined;
}
