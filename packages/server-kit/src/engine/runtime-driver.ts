/**
 * The runtime driver seam: what the engine needs from whatever actually runs sandboxes.
 * `local` (bubblewrap, in @sbx/server) and `fake` (in memory, in @sbx/testing) implement it;
 * a Kubernetes driver will later. Drivers know nothing of RPCs, offsets, ids policy or
 * persistence: the engine keeps those.
 */
import type { FsErrorKind } from "../filesystem-errors.js";
import type { ImageRecord } from "./image-store.js";

export interface RuntimeSandboxSpec {
  /** Server-chosen sandbox id, safe as a file or cgroup name ([a-z0-9-]). */
  readonly id: string;
  /**
   * The image to start from, as the engine resolved it (pulled already; the driver asks the
   * image store where its layers are); undefined: the driver's default image. Processes get
   * its config's Env under the sandbox's and their own (`processEnv(…, image)`).
   */
  readonly image?: ImageRecord | undefined;
  /**
   * The user every process runs as: the image's User ("name", "uid", "name:group",
   * "uid:gid", looked up in the image's /etc/passwd and /etc/group); undefined: root.
   */
  readonly user?: string | undefined;
  /** Environment given to every process (the entrypoint's and exec'd ones merge their own on top). */
  readonly env: Readonly<Record<string, string>>;
  /**
   * Default working directory (absolute): the sandbox's workdir, else the image's WorkingDir
   * (the driver creates it if the image lacks it, as Docker does); undefined: "/".
   */
  readonly workdir?: string | undefined;
  /** CPU limit in cores (fractional); undefined: no limit. */
  readonly cpuLimit?: number | undefined;
  /** Memory limit in MiB; undefined: the driver's default. */
  readonly memoryLimitMiB?: number | undefined;
  /** Capacity of the writable layer in MiB; undefined: the driver's default. */
  readonly diskMiB?: number | undefined;
  /** Maximum number of processes/threads; undefined: the driver's default. */
  readonly pidsLimit?: number | undefined;
  /** Its network: outbound policy and exposed ports (`BLOCKED_NETWORK` for none). */
  readonly network: RuntimeNetworkSpec;
}

/**
 * A sandbox's outbound policy, as the engine checked it (`networkPolicyProblem`, shared with
 * the client): never an allowlist together with `blockNetwork`.
 */
export interface RuntimeNetworkPolicy {
  /**
   * True: the sandbox reaches nothing beyond itself (DNS included). It can still be reached
   * through the server on its `ports` (ingress is the server's, not the sandbox's, traffic).
   */
  readonly blockNetwork: boolean;
  /**
   * Empty: every destination the server allows at all (never the host, other sandboxes,
   * link-local or metadata addresses, nor what the operator denies). Otherwise only these
   * ranges: canonical CIDRs ("10.1.0.0/16", "2001:db8::/32"; no host bits, no zone).
   */
  readonly cidrAllowlist: readonly string[];
}

/** What a sandbox starts with: its outbound policy, the ports tunnels reach, its TCP probe. */
export interface RuntimeNetworkSpec extends RuntimeNetworkPolicy {
  /** Ports inside the sandbox the server opens tunnels to (unique, 1–65535, ascending). */
  readonly ports: readonly number[];
  /** The port a TCP readiness probe will try through `probeTcp`; undefined: none. */
  readonly probePort?: number | undefined;
}

/** No outbound network, nothing exposed: what warm sandboxes start with. */
export const BLOCKED_NETWORK: RuntimeNetworkSpec = Object.freeze({
  blockNetwork: true,
  cidrAllowlist: Object.freeze([]) as readonly string[],
  ports: Object.freeze([]) as readonly number[],
});

export interface RuntimeProcessSpec {
  /** The engine's id of the process (unique in its sandbox), for drivers that show or log it. */
  readonly processId?: string | undefined;
  readonly argv: readonly string[];
  /** Merged on top of the sandbox env. */
  readonly env: Readonly<Record<string, string>>;
  /** Absolute; undefined: the sandbox's workdir. */
  readonly workdir?: string | undefined;
  /** Run under a pseudo-terminal (stdout and stderr merged into stdout). */
  readonly pty: boolean;
  /** The terminal's initial size when `pty` (default 24 × 80). */
  readonly ptySize?: { readonly rows: number; readonly cols: number } | undefined;
  /** Send stderr into the stdout pipe (one stream, in the order written). */
  readonly mergeStderr?: boolean;
}

export type RuntimeExit =
  | { readonly kind: "exited"; readonly code: number }
  | { readonly kind: "signaled"; readonly signal: number };

export interface RuntimeProcess {
  /** The pid as seen inside the sandbox (0 if unknown). */
  readonly pid: number;
  /** Called with each chunk of output, in order, until the stream ends. */
  onStdout(listener: (chunk: Uint8Array) => void): void;
  onStderr(listener: (chunk: Uint8Array) => void): void;
  /**
   * Back-pressure: stop reading the process's output (stdout and stderr) until
   * `resumeOutput`, so it blocks once its pipes are full. Output still arrives after exit.
   */
  pauseOutput(): void;
  resumeOutput(): void;
  /** Resolves when the data has been handed to the process's stdin pipe. */
  writeStdin(data: Uint8Array): Promise<void>;
  closeStdin(): Promise<void>;
  /** Sends a signal to the process (and its process group). */
  signal(signal: number): void;
  /** Changes the terminal's size (processes started with `pty`; otherwise ignored). */
  resize(rows: number, cols: number): void;
  /** Resolves once the process has exited AND its stdout/stderr have been fully delivered. */
  readonly exit: Promise<RuntimeExit>;
}

/** What went wrong with a file operation (the wire's FilesystemErrorKind). */
export type RuntimeFsErrorKind = FsErrorKind;

export class RuntimeFsError extends Error {
  constructor(
    readonly kind: RuntimeFsErrorKind,
    message: string,
  ) {
    super(message);
    this.name = "RuntimeFsError";
  }
}

/** The runtime did not answer a call in time (its sandbox is overloaded, stopped or stuck). */
export class RuntimeDeadlineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RuntimeDeadlineError";
  }
}

export interface RuntimeFileInfo {
  readonly name: string;
  readonly path: string;
  readonly type: "file" | "directory" | "symlink" | "other";
  readonly size: number;
  readonly mode: number;
  readonly mtimeMs: number;
  readonly symlinkTarget?: string | undefined;
}

/** An upload in progress: bytes are written in order, then moved into place (or dropped). */
export interface RuntimeUpload {
  /**
   * Queues `data`; resolves when more may be written (not when it is on disk: a failure to
   * store it is reported by `commit`). Rejects when the upload has already failed.
   */
  write(data: Uint8Array): Promise<void>;
  /** Moves the written bytes onto the path in one rename (keeping an existing file's mode). */
  commit(): Promise<void>;
  /** Drops the upload and its temporary file. */
  abort(): Promise<void>;
}

/**
 * File operations inside a sandbox. Paths are absolute and resolve inside the sandbox's own
 * root with the sandbox user's permissions. Failures are `RuntimeFsError`s.
 */
export interface RuntimeFilesystem {
  stat(path: string): Promise<RuntimeFileInfo>;
  list(path: string): Promise<RuntimeFileInfo[]>;
  makeDirectory(path: string, createParents: boolean): Promise<void>;
  remove(path: string, recursive: boolean): Promise<void>;
  /**
   * The file's bytes from `offset` to its end (opening fails before the first chunk). A chunk
   * is valid until the next one is asked for (its memory may be reused): a consumer that
   * keeps bytes longer (a socket still sending them, say) waits or copies.
   */
  read(path: string, offset: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
  /** Starts an upload to `path` (parents created); fails at once when `path` is a directory. */
  upload(path: string): Promise<RuntimeUpload>;
  /**
   * Watches a file or directory: resolves once the watch is in place (every later change is
   * reported), with batches of events that end when the sandbox ends or `signal` aborts.
   */
  watch(path: string, recursive: boolean, signal: AbortSignal): Promise<AsyncIterable<RuntimeWatchEvent[]>>;
}

export type RuntimeWatchEventType = "create" | "modify" | "delete" | "rename" | "overflow";

export interface RuntimeWatchEvent {
  readonly type: RuntimeWatchEventType;
  /** Absolute paths inside the sandbox ([from, to] for a rename seen from both sides). */
  readonly paths: string[];
}

export interface RuntimeSandbox {
  readonly id: string;
  readonly fs: RuntimeFilesystem;
  /** Starts a process inside the sandbox (same namespaces, root, cgroup, seccomp). */
  exec(spec: RuntimeProcessSpec): Promise<RuntimeProcess>;
  /**
   * Replaces the sandbox's outbound policy; resolves once it is in force, connections it no
   * longer allows cut. Absent: this driver cannot change a running sandbox's policy (the
   * engine answers UNIMPLEMENTED).
   */
  updateNetwork?(policy: RuntimeNetworkPolicy): Promise<void>;
  /**
   * One try of a TCP readiness probe: true when something in the sandbox accepted a connection
   * on `port` on the path tunnels use (the connection is then closed), false when it was
   * refused or not answered before `signal` aborted. Absent: the driver has no way in (a
   * create with a TCP probe is refused through `networkProblem`).
   */
  probeTcp?(port: number, signal: AbortSignal): Promise<boolean>;
  /** Kills every process in the sandbox and releases everything it held (mounts, cgroups, dirs). Idempotent. */
  destroy(): Promise<void>;
  /** Resolves if the sandbox dies on its own (its init was killed, e.g. by the OOM killer). */
  readonly died: Promise<void>;
}

export interface SandboxRuntime {
  readonly name: string;
  /**
   * The driver's default image, described as an image (listed, not deletable); absent: the
   * engine's `DEFAULT_IMAGE`.
   */
  readonly defaultImage?: ImageRecord | undefined;
  /**
   * Why this driver cannot start a sandbox from `image` (a sentence), or undefined when it
   * can; a driver may need to read the image's files to tell (then it answers a promise). The
   * engine asks before anything is recorded and refuses with UNIMPLEMENTED
   * (`UnsupportedError`). Absent: the driver starts its default image only.
   */
  imageProblem?(image: ImageRecord): string | undefined | Promise<string | undefined>;
  /**
   * Lets go of what the driver keeps of an image besides the sandboxes the engine knows of
   * (sandboxes started ahead of demand), and waits for its sandboxes of the image that are
   * being destroyed: the engine calls it before the image store deletes the image. Absent:
   * the driver keeps nothing.
   */
  releaseImage?(imageId: string): Promise<void>;
  /**
   * Whether any sandbox of the driver still stands on the image's layers (being started,
   * started ahead of demand, running, or being destroyed): an image store must not remove
   * them meanwhile. Absent: the engine's record of running sandboxes is all there is.
   */
  imageInUse?(imageId: string): boolean;
  /**
   * Why this driver cannot give a sandbox `network` (a sentence: which part, e.g. "exposed
   * ports are not supported by this server yet"), or undefined when it can. The engine asks
   * before a create is recorded and refuses with UNIMPLEMENTED (`UnsupportedError`). Absent:
   * the driver does all of it.
   */
  networkProblem?(network: RuntimeNetworkSpec): string | undefined;
  /** What is missing on this machine, one sentence each with how to fix it; empty when ready. */
  checkPrerequisites(): Promise<string[]>;
  createSandbox(spec: RuntimeSandboxSpec): Promise<RuntimeSandbox>;
  /** Removes what sandboxes of an earlier server run left behind (after a crash). */
  cleanupLeftovers(): Promise<void>;
  /** Destroys every sandbox this runtime created. */
  close(): Promise<void>;
}
