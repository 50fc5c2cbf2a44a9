/** What `@sbx/web` needs of `fetch` (any function with its call signature will do). */
export type FetchFunction = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;

/** `fetch` as looked up at each call (so a later polyfill or test stub applies). */
export const globalFetch: FetchFunction = (input, init) => globalThis.fetch(input, init);
