/**
 * The default image as processes see it: the environment every process starts with, under
 * the sandbox's and the call's own. Both runtime drivers use it, so a fake process sees what
 * a real one does.
 */
export const DEFAULT_IMAGE_ENV: Readonly<Record<string, string>> = Object.freeze({
  // /opt/sbx/bin last: the image's fallbacks (e.g. `python` → python3) never shadow the system's.
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/sbx/bin",
  HOME: "/root",
  LANG: "C.UTF-8",
});

/** Added for a process run under a pseudo-terminal. */
export const PTY_ENV: Readonly<Record<string, string>> = Object.freeze({ TERM: "xterm-256color" });

/** A process's environment: the image's, a terminal's when it has one, the sandbox's, the call's. */
export const processEnv = (
  pty: boolean,
  sandboxEnv: Readonly<Record<string, string>>,
  callEnv: Readonly<Record<string, string>>,
): Record<string, string> => ({ ...DEFAULT_IMAGE_ENV, ...(pty ? PTY_ENV : {}), ...sandboxEnv, ...callEnv });
