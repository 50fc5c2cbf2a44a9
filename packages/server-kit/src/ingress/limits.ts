/** What ingress tokens may carry (browser-safe; shared by the NetworkService's checks and the token module). */

/** Most bytes of user metadata a connect token carries (it travels in a header). */
export const MAX_USER_METADATA_BYTES = 4096;
