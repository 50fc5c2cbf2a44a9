// The default image: the commands a newcomer expects are there, and `python` means python3.
import * as sdk from "@sbx/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { realServerAvailable, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

if (available) {
  describe("default image (real server)", () => {
    const server = useTestServer();
    let client: sdk.SandboxClient;
    beforeAll(async () => {
      client = new sdk.SandboxClient({ endpoint: server.url, token: server.token });
    });
    afterAll(async () => {
      await client.close();
    });

    it("has sh, bash, coreutils and python3, and `python` runs python3", async () => {
      await using sb = await client.sandboxes.create();
      const r = await sb.run(
        "python -c 'import sys; print(sys.version_info[0])'; python3 -c 'print(6 * 7)'; " +
          "bash -c 'echo $BASH_VERSION' | cut -c1; ls / | grep -c usr",
      );
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe("3\n42\n5\n1\n");
      // The seed's stdin example: `python -c 'name = input(...)'` answered through sendInput.
      const h = await sb.run(`python -c 'name = input("Name: "); print(f"Hello {name}")'`, { wait: false });
      for await (const chunk of h) {
        if (chunk.data.includes("Name:")) await h.sendInput("World\n");
      }
      expect((await h.result).stdout).toBe("Name: Hello World\n");
    });
  });
}
