/** What the server reads of /proc/<pid>/status. */

/** A process's or thread's id in its innermost pid namespace (the NSpid line's last field). */
export function innermostPidOf(status: string): string | undefined {
  return /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/).at(-1);
}
