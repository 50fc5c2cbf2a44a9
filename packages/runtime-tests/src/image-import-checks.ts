/**
 * `client.images.import(path)` in a runtime other than Node (Deno, Bun), against one target:
 * imports an OCI layout directory and a `docker save` tarball, starts a sandbox from each and
 * reads what the image put there, and tries a path that is not there. What it saw goes back
 * to the Node side as JSON. Runtime-neutral: each runtime's entry passes its own client.
 */
interface ImportingClient {
  readonly images: {
    import(path: string): Promise<{ id: string; refs: readonly string[]; config: { workingDir: string } }>;
  };
  readonly sandboxes: {
    create(options: { image: string; timeoutMs: number }): Promise<{
      run(command: string): Promise<{ stdout: string }>;
      terminate(): Promise<unknown>;
    }>;
  };
}

export interface ImportSeen {
  readonly layout: string;
  readonly tarball: string;
  readonly missing: string;
}

/** "Name: message" of a rejection, or what a success showed. */
const outcome = async (work: () => Promise<string>): Promise<string> => {
  try {
    return await work();
  } catch (error) {
    return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  }
};

export async function checkImports(
  client: ImportingClient,
  paths: { readonly layout: string; readonly tarball: string; readonly missing: string },
): Promise<ImportSeen> {
  const importAndRun = (path: string, command: string) =>
    outcome(async () => {
      const image = await client.images.import(path);
      const sb = await client.sandboxes.create({ image: image.id, timeoutMs: 60_000 });
      try {
        const { stdout } = await sb.run(command);
        return `${image.refs.join(",")} ${image.config.workingDir} ${stdout.trim()}`;
      } finally {
        await sb.terminate();
      }
    });
  return {
    layout: await importAndRun(paths.layout, 'cat /app/hello.txt; echo "$FROM"'),
    tarball: await importAndRun(paths.tarball, "cat /etc/motd; id -u"),
    missing: await outcome(async () => JSON.stringify(await client.images.import(paths.missing))),
  };
}
