import { FAKE_KNOWN_DIFFERENCES, type KnownDifferences, SERVER_KNOWN_DIFFERENCES } from "@sbx/testing/conformance";

/** The servers a runtime's conformance run talks to; shared by the Node side and the runtime side. */
export interface RemoteTarget {
  /** "real server" or "fake". */
  readonly kind: "real server" | "fake";
  readonly url: string;
  readonly token: string;
}

/** Where each kind of target is known to differ (both sides must agree: it changes the cases' names). */
export const knownDifferencesOf = (target: Pick<RemoteTarget, "kind">): KnownDifferences =>
  target.kind === "fake" ? FAKE_KNOWN_DIFFERENCES : SERVER_KNOWN_DIFFERENCES;

export const targetName = (runtime: string, target: Pick<RemoteTarget, "kind">): string =>
  `${runtime} → ${target.kind}`;
