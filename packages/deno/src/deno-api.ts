/**
 * The few Deno APIs this package uses, typed here so that `tsc` builds it in a Node monorepo
 * without Deno's own type library. Read through `globalThis` at call time, so importing the
 * package elsewhere (type checks, bundlers) does not fail.
 */

export interface DenoFile extends Disposable {
  readonly readable: ReadableStream<Uint8Array<ArrayBuffer>>;
  readonly writable: WritableStream<Uint8Array>;
  close(): void;
}

export interface DenoOpenOptions {
  readonly read?: boolean;
  readonly write?: boolean;
  readonly create?: boolean;
  readonly createNew?: boolean;
  readonly truncate?: boolean;
}

export interface DenoApi {
  readonly pid: number;
  readonly env: { get(key: string): string | undefined };
  open(path: string, options?: DenoOpenOptions): Promise<DenoFile>;
  mkdir(path: string, options?: { readonly recursive?: boolean }): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  remove(path: string, options?: { readonly recursive?: boolean }): Promise<void>;
  stat(path: string): Promise<DenoFileInfo>;
  lstat(path: string): Promise<DenoFileInfo>;
  readDir(path: string): AsyncIterable<{ readonly name: string }>;
  listen(options: { readonly hostname: string; readonly port: number; readonly transport?: "tcp" }): DenoListener;
  connect(options: { readonly hostname: string; readonly port: number; readonly transport?: "tcp" }): Promise<DenoConn>;
  connectTls(options: { readonly hostname: string; readonly port: number }): Promise<DenoConn>;
}

/** A TCP connection `Deno.listen` accepted, or `Deno.connect` / `Deno.connectTls` made. */
export interface DenoConn {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}

export interface DenoListener extends AsyncIterable<DenoConn> {
  readonly addr: { readonly port: number };
  close(): void;
}

export interface DenoFileInfo {
  readonly isFile: boolean;
  readonly isDirectory: boolean;
  readonly size: number;
}

/** Deno's global namespace, or undefined outside Deno. */
export const denoGlobal = (): DenoApi | undefined => (globalThis as { Deno?: DenoApi }).Deno;

/**
 * An environment variable, or undefined when it is unset, empty, or not readable: without
 * `--allow-env` Deno throws (NotCapable), and a client should then use its defaults, not crash.
 */
export function readEnv(name: string): string | undefined {
  try {
    return denoGlobal()?.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}
