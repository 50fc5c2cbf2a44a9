/**
 * Image operations as Effects over `SbxConnection`: the Effect API's `Images`, and what the
 * Promise API's `client.images` runs (loaded on first use, so apps that never touch images do
 * not download this).
 */
import {
  credentialsProblem,
  formatImageReference,
  type Image as ImageInfo,
  imageIdProblem,
  imageReferenceProblem,
  imageSelectorProblem,
  parseImageReference,
  RAW_IMAGE_IMPORT_PATH,
} from "@sbx/proto";
import * as Effect from "effect/Effect";
import * as Option from "effect/Option";
import * as Stream from "effect/Stream";
import { ConnectionError, InvalidError, type SandboxError, UnsupportedError } from "./errors.js";
import type { RawBody } from "./raw-routes.js";
import { call, retrying, SbxConnection, withDeadline } from "./rpc.js";
import { markTransient, toSandboxError } from "./rpc-errors.js";
import { Code, rpcFailureFromJson } from "./rpc-failure.js";
import { validateDuration, validated } from "./validation.js";

/** An image the server keeps: what `fromRegistry`, `list`, `get` and `import` give. */
export interface Image {
  /** "im-" and 20 hex digits; "im-default" for the server's default image. */
  readonly id: string;
  /**
   * The canonical reference: the one pulled ("docker.io/library/python:3.12-slim" for
   * "python:3.12-slim"), else the newest the image was pulled or imported as; undefined for an
   * image that has none (the default image, an archive that named none).
   */
  readonly ref: string | undefined;
  /** Every canonical reference it was pulled or imported as, newest first. */
  readonly refs: readonly string[];
  /** Digest of the manifest it was made from ("sha256:…"); "" for the default image. */
  readonly digest: string;
  /** Bytes its layers take on the server (unpacked). */
  readonly sizeBytes: number;
  /** When the server stored it (ms since the epoch); 0 for the default image. */
  readonly createdAtMs: number;
  /** The platform it was pulled for ("linux", "amd64"). */
  readonly platform: { readonly os: string; readonly architecture: string; readonly variant?: string };
  /** What every process of a sandbox started from it gets unless the sandbox or the call says otherwise. */
  readonly config: ImageConfig;
  /** The server's default image: always there, never pulled, not deletable. */
  readonly builtin: boolean;
}

export interface ImageConfig {
  /** The image's `Env` (under the sandbox's `env` and a call's). */
  readonly env: Readonly<Record<string, string>>;
  /** The image's `WorkingDir`: the default workdir ("/" when unset). */
  readonly workingDir: string;
  /** The image's `User`: who processes run as ("root" when unset). */
  readonly user: string;
  /** The image's `Entrypoint` and `Cmd`, for reference: a sandbox runs its own `command`. */
  readonly entrypoint: readonly string[];
  readonly cmd: readonly string[];
}

/** Pull progress: bytes of layers downloaded so far, of those to download. */
export interface PullProgress {
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

export interface PullImageOptions {
  /** For a private registry: sent with this pull only (the server never stores or logs them). */
  readonly credentials?: { readonly username: string; readonly password: string };
  /** Called as layers download (at most as often as the server reports; the last call has bytesDone = bytesTotal). */
  readonly onProgress?: (progress: PullProgress) => void;
  /** Deadline for the whole pull, retries included. Default 30 minutes. */
  readonly timeoutMs?: number;
}

export interface ImportImageOptions {
  /** Deadline for the whole import. Default 30 minutes. */
  readonly timeoutMs?: number;
}

/** How long a pull or an import (or a create that pulls its image) may take by default: 30 minutes. */
export const IMAGE_TRANSFER_TIMEOUT_MS = 30 * 60_000;

function envRecord(entries: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of entries) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

/** An image as the wire has it (protobuf-es, @sbx/web's codec, or proto3 JSON read as such). */
type WireImage = Pick<ImageInfo, "id" | "refs" | "digest" | "builtin"> & {
  readonly sizeBytes: bigint | number | string;
  readonly createdAtMs: bigint | number | string;
  readonly platform?: { readonly os: string; readonly architecture: string; readonly variant: string } | undefined;
  readonly config?:
    | {
        readonly env: readonly string[];
        readonly workingDir: string;
        readonly user: string;
        readonly entrypoint: readonly string[];
        readonly cmd: readonly string[];
      }
    | undefined;
};

/** The public `Image` of a wire image; `ref` is the reference asked for, when there was one. */
export function imageOf(wire: WireImage, ref?: string): Image {
  const platform = wire.platform ?? { os: "", architecture: "", variant: "" };
  const config = wire.config;
  return {
    id: wire.id,
    ref: ref ?? wire.refs[0],
    refs: [...wire.refs],
    digest: wire.digest,
    sizeBytes: Number(wire.sizeBytes),
    createdAtMs: Number(wire.createdAtMs),
    platform: {
      os: platform.os,
      architecture: platform.architecture,
      ...(platform.variant ? { variant: platform.variant } : {}),
    },
    config: {
      env: envRecord(config?.env ?? []),
      workingDir: config?.workingDir || "/",
      user: config?.user || "root",
      entrypoint: [...(config?.entrypoint ?? [])],
      cmd: [...(config?.cmd ?? [])],
    },
    builtin: wire.builtin,
  };
}

/** An image as the raw import route answers (sbx.v1.Image as proto3 JSON: defaults left out). */
function imageOfJson(json: unknown): Image {
  const j = (typeof json === "object" && json !== null ? json : {}) as Record<string, unknown>;
  const obj = (v: unknown) => (typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {});
  const str = (v: unknown) => (typeof v === "string" ? v : "");
  const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
  const platform = obj(j.platform);
  const config = obj(j.config);
  if (!str(j.id)) throw new Error("the server's answer has no image");
  return imageOf({
    id: str(j.id),
    refs: list(j.refs),
    digest: str(j.digest),
    sizeBytes: str(j.sizeBytes) || 0,
    createdAtMs: str(j.createdAtMs) || 0,
    builtin: j.builtin === true,
    platform: { os: str(platform.os), architecture: str(platform.architecture), variant: str(platform.variant) },
    config: {
      env: list(config.env),
      workingDir: str(config.workingDir),
      user: str(config.user),
      entrypoint: list(config.entrypoint),
      cmd: list(config.cmd),
    },
  });
}

const refuse = (problem: string | undefined) => {
  if (problem) throw new InvalidError(problem);
};

/** The deadline an option names (validated), or the default for image transfers. */
const transferTimeout = (timeoutMs: number | undefined) =>
  timeoutMs === undefined ? IMAGE_TRANSFER_TIMEOUT_MS : validateDuration(timeoutMs, "timeoutMs");

/**
 * Pulls `reference` (or finds it already pulled): progress as layers download, then the
 * image. A malformed reference is an `InvalidError` before any request; a pull cut by a
 * transient failure is asked for again, and the server resumes it.
 */
export const pullImage = (
  reference: string,
  options: PullImageOptions = {},
): Effect.Effect<Image, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const { canonical, credentials, timeoutMs } = yield* validated(() => {
      refuse(imageReferenceProblem(reference));
      if (typeof options !== "object" || options === null) throw new InvalidError("pull options must be an object");
      refuse(credentialsProblem(options.credentials));
      if (options.onProgress !== undefined && typeof options.onProgress !== "function") {
        throw new InvalidError("onProgress must be a function");
      }
      return {
        canonical: formatImageReference(parseImageReference(reference)),
        credentials: options.credentials
          ? { username: options.credentials.username, password: options.credentials.password }
          : undefined,
        timeoutMs: transferTimeout(options.timeoutMs),
      };
    });
    const rpc = yield* SbxConnection;
    const what = `pull image ${reference}`;
    const attempt = Effect.tryPromise({
      try: async (signal) => {
        for await (const message of rpc.images.pullImage(
          { reference, credentials },
          { signal, headers: rpc.headers, timeoutMs },
        )) {
          const event = message.event;
          if (event.case === "progress") {
            options.onProgress?.({
              bytesDone: Number(event.value.bytesDone),
              bytesTotal: Number(event.value.bytesTotal),
            });
          } else if (event.case === "image") return imageOf(event.value, canonical);
        }
        throw markTransient(new ConnectionError(`${what}: the answer ended before the image`));
      },
      catch: (error) => toSandboxError(error, what, rpc.config.endpoint),
    });
    return yield* withDeadline(retrying(attempt, rpc.config), timeoutMs, what);
  });

/** Every image the server keeps (the default image among them), newest first, page by page. */
export const listImages = (): Stream.Stream<Image, SandboxError, SbxConnection> =>
  Stream.paginate("", (cursor: string) =>
    call("list images", (rpc, o) => rpc.images.listImages({ cursor, pageSize: 100 }, o)).pipe(
      Effect.map(
        (page) =>
          [
            page.images.map((wire) => imageOf(wire)),
            page.nextCursor ? Option.some(page.nextCursor) : Option.none(),
          ] as const,
      ),
    ),
  );

/** An image by id, manifest digest or reference; `NotFoundError` when the server has none. */
export const getImage = (image: string): Effect.Effect<Image, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    yield* validated(() => refuse(imageSelectorProblem(image)));
    const response = yield* call(`get image ${image}`, (rpc, o) => rpc.images.getImage({ image }, o));
    if (!response.image) return yield* Effect.fail(new ConnectionError(`get image ${image}: the answer has no image`));
    return imageOf(response.image);
  });

/**
 * Removes an image and the layers no other image uses. `FailedPreconditionError` for the
 * default image and for one a running sandbox uses; a retry after a lost answer finds it gone,
 * which counts as done.
 */
export const deleteImage = (image: string | Image): Effect.Effect<void, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const imageId = yield* validated(() => {
      const id = typeof image === "object" && image !== null ? (image as { id?: unknown }).id : image;
      refuse(imageIdProblem(id));
      return id as string;
    });
    let attempts = 0;
    yield* call(`delete image ${imageId}`, async (rpc, o) => {
      attempts++;
      try {
        await rpc.images.deleteImage({ imageId }, o);
      } catch (error) {
        // Gone already, and an earlier attempt may have been the one that removed it.
        const code = (error as { code?: unknown }).code;
        if (attempts > 1 && code === Code.NotFound) return;
        throw error;
      }
    });
  });

/**
 * Imports an image archive (an OCI image layout, tarred, or a `docker save` tarball) streamed
 * as one request over raw HTTP. Not retried: a cut upload imports nothing and is started again.
 */
export const importImageArchive = (
  archive: RawBody,
  options: ImportImageOptions = {},
): Effect.Effect<Image, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const timeoutMs = yield* validated(() => {
      const ok =
        archive instanceof Uint8Array ||
        (typeof Blob !== "undefined" && archive instanceof Blob) ||
        (typeof archive === "object" && archive !== null && Symbol.asyncIterator in archive);
      if (!ok) throw new InvalidError("an image archive must be a Uint8Array, a Blob or an async iterable of bytes");
      return transferTimeout(options.timeoutMs);
    });
    const rpc = yield* SbxConnection;
    const what = "import image";
    const raw = rpc.rawHttp;
    if (!raw?.post) {
      return yield* Effect.fail(
        new UnsupportedError(
          `${what}: an archive goes to the server as one HTTP upload, which this client cannot send ` +
            "(a client over an in-process transport, or with rawHttp: false)",
        ),
      );
    }
    const post = raw.post.bind(raw);
    const upload = Effect.tryPromise({
      try: async (signal) => {
        const answer = await post({
          route: "images",
          path: RAW_IMAGE_IMPORT_PATH,
          headers: rpc.headers,
          signal,
          body: archive,
        });
        if (!answer) throw new UnsupportedError(`${what}: this server has no image import route (an older sbx server)`);
        if (answer.status !== 200) throw rpcFailureFromJson(answer.json, answer.status);
        return imageOfJson((answer.json as { image?: unknown }).image);
      },
      catch: (error) => toSandboxError(error, what, rpc.config.endpoint),
    });
    return yield* withDeadline(upload, timeoutMs, what);
  });
