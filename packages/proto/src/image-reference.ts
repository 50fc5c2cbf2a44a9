/**
 * Image references ("python:3.12-slim", "ghcr.io/org/app@sha256:…", "127.0.0.1:5000/x:1"), parsed
 * the same way by the client (to refuse a malformed one before any request) and by the server (to
 * know which registry and repository to ask). The grammar is the OCI distribution one Docker uses:
 *
 *   reference  := name [":" tag] ["@" digest]
 *   name       := [registry "/"] path            (at most 255 characters)
 *   registry   := host [":" port]                 (a first component with "." or ":", or "localhost")
 *   path       := component ("/" component)*     component := [a-z0-9]+ (("." | "_" | "__" | "-"+) [a-z0-9]+)*
 *   tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *   digest     := algorithm ":" hex               (sha256 with 64 lowercase hex digits, sha512 with 128)
 *
 * Without a registry the reference means Docker Hub, and a one-component path there means an
 * official image: "python" is "docker.io/library/python". Without a tag or a digest the tag is
 * "latest".
 */

/** Docker Hub's name in references (its API lives at {@link DOCKER_HUB_API_HOST}). */
export const DOCKER_HUB = "docker.io";
/** Where Docker Hub's distribution API answers. */
export const DOCKER_HUB_API_HOST = "registry-1.docker.io";

export interface ImageReference {
  /** "docker.io", "ghcr.io", "127.0.0.1:5000", "[::1]:5000", "localhost:5000". */
  readonly registry: string;
  /** "library/python", "org/app". */
  readonly repository: string;
  /** The tag; undefined when the reference names a digest alone. */
  readonly tag?: string | undefined;
  /** "sha256:<hex>" when the reference pins one. */
  readonly digest?: string | undefined;
}

const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
const HOST_NAME = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?))*$/;
const IPV6 = /^\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9]+)?\]$/;
const MAX_NAME = 255;

/** A reference that does not follow the grammar; `message` says what is wrong with it. */
export class ImageReferenceError extends Error {
  override readonly name = "ImageReferenceError";
}

/** What is wrong with `text` as an image reference, or undefined when it is one. */
export function imageReferenceProblem(text: unknown): string | undefined {
  try {
    parseImageReference(text);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/** Parses and normalizes a reference; throws {@link ImageReferenceError} naming the problem. */
export function parseImageReference(text: unknown): ImageReference {
  const fail = (why: string): never => {
    throw new ImageReferenceError(`invalid image reference ${JSON.stringify(text)}: ${why}`);
  };
  if (typeof text !== "string") return fail("it must be a string");
  if (text.length === 0) return fail("it is empty");
  if (/\s/.test(text) || [...text].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f))
    return fail("it contains whitespace or control characters");

  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) return fail("the digest must be sha256:<64 hex digits> or sha512:<128 hex digits>");
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) return fail("the tag must be 1-128 of A-Z a-z 0-9 _ . - and not start with . or -");
  }
  if (rest.length === 0) return fail("it has no repository");
  if (rest.length > MAX_NAME) return fail(`the name is longer than ${MAX_NAME} characters`);

  const parts = rest.split("/");
  let registry = DOCKER_HUB;
  const first = parts[0] as string;
  if (
    parts.length > 1 &&
    (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("["))
  ) {
    registry = registryProblem(first) === undefined ? first : fail(registryProblem(first) as string);
    parts.shift();
  }
  for (const part of parts) {
    if (!COMPONENT.test(part)) {
      return fail(
        `${JSON.stringify(part)} is not a valid repository component (lowercase letters and digits, separated by ".", "_", "__" or "-")`,
      );
    }
  }
  if (registry === "index.docker.io") registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift("library");
  if (tag === undefined && digest === undefined) tag = "latest";
  return { registry, repository: parts.join("/"), tag, digest };
}

function registryProblem(registry: string): string | undefined {
  let host = registry;
  let port: string | undefined;
  if (registry.startsWith("[")) {
    const end = registry.indexOf("]");
    host = registry.slice(0, end + 1);
    const after = registry.slice(end + 1);
    if (after !== "") {
      if (!after.startsWith(":")) return `the registry ${JSON.stringify(registry)} is not host[:port]`;
      port = after.slice(1);
    }
    if (!IPV6.test(host)) return `the registry ${JSON.stringify(registry)} is not a valid IPv6 address`;
  } else {
    const colon = registry.indexOf(":");
    if (colon !== -1) {
      host = registry.slice(0, colon);
      port = registry.slice(colon + 1);
    }
    if (!HOST_NAME.test(host)) return `the registry host ${JSON.stringify(host)} is not a valid host name`;
  }
  if (port !== undefined && !(/^[0-9]{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65_535)) {
    return `the registry port ${JSON.stringify(port)} is not 1-65535`;
  }
  return undefined;
}

/** The canonical text of a reference: "docker.io/library/python:3.12-slim", "…@sha256:…". */
export function formatImageReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest !== undefined ? `@${ref.digest}` : ""}`;
}

/** Whether `registry` is a loopback address, spoken to over plain HTTP without being told. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.startsWith("[") ? registry.slice(1, registry.indexOf("]")) : registry.split(":")[0];
  return host === "localhost" || host === "::1" || /^127(?:\.[0-9]{1,3}){3}$/.test(host ?? "");
}
