/**
 * The images API's input rules beside the reference grammar (image-reference.ts), shared by the
 * client (refusing bad input before any request) and the server (refusing it from any client).
 * Hand-written, browser-safe.
 */
import { imageReferenceProblem } from "./image-reference.js";

/** The id of the server's default image: always there, listed like any other, not deletable. */
export const DEFAULT_IMAGE_ID = "im-default";

/** An image store's ids: "im-" and the first 20 hex digits of the image's config digest. */
const STORED_IMAGE_ID = /^im-[0-9a-f]{20}$/;
const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/** Longest registry user name or password a pull takes (a registry token fits easily). */
export const MAX_CREDENTIAL_LENGTH = 8192;

/**
 * Whether `text` is an image id ("im-default", or "im-" and 20 hex digits). An id is looked up
 * before a reference: "im-default" names the default image, never Docker Hub's
 * "library/im-default".
 */
export const isImageId = (text: string): boolean => text === DEFAULT_IMAGE_ID || STORED_IMAGE_ID.test(text);

/** Whether `text` is a manifest digest ("sha256:<64 hex>" or "sha512:<128 hex>"). */
export const isImageDigest = (text: string): boolean => DIGEST.test(text);

/**
 * What is wrong with `text` as a way to name an image a server keeps (an id, a manifest digest
 * or a reference), or undefined when it is one.
 */
export function imageSelectorProblem(text: unknown): string | undefined {
  if (typeof text === "string" && (isImageId(text) || isImageDigest(text))) return undefined;
  return imageReferenceProblem(text);
}

/** What is wrong with `text` as an image id, or undefined when it is one. */
export function imageIdProblem(text: unknown): string | undefined {
  return typeof text === "string" && isImageId(text)
    ? undefined
    : `invalid image id ${JSON.stringify(text)}: an image id is "im-default" or "im-" and 20 hex digits`;
}

/** What is wrong with registry credentials, or undefined when they are fine (or absent). */
export function credentialsProblem(credentials: unknown): string | undefined {
  if (credentials === undefined) return undefined;
  if (typeof credentials !== "object" || credentials === null) return "credentials must be { username, password }";
  const { username, password } = credentials as { username?: unknown; password?: unknown };
  if (typeof username !== "string" || typeof password !== "string") {
    return "credentials must be { username, password }, both strings";
  }
  if (username.length === 0) return "the credentials' username is empty";
  if (username.length > MAX_CREDENTIAL_LENGTH || password.length > MAX_CREDENTIAL_LENGTH) {
    return `the credentials' username and password must be at most ${MAX_CREDENTIAL_LENGTH} characters`;
  }
  // Never echoed: a message may end up in logs.
  if (/[\0\r\n]/.test(username) || /[\0\r\n]/.test(password)) {
    return "the credentials must not contain NUL or line breaks";
  }
  if (username.includes(":")) return "the credentials' username must not contain ':'";
  return undefined;
}
