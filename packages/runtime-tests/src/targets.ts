/** The servers a runtime's conformance run talks to; shared by the Node side and the runtime side. */
export interface RemoteTarget {
  /** "real server" or "fake". */
  readonly kind: "real server" | "fake";
  readonly url: string;
  readonly token: string;
}

export const targetName = (runtime: string, target: Pick<RemoteTarget, "kind">): string =>
  `${runtime} → ${target.kind}`;
