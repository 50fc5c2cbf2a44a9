/** Options every call of the client takes. */
export interface CallOptions {
  /** Cancels the call (`AbortedError`). */
  readonly signal?: AbortSignal;
}
