import type { SandboxClient } from "@sbx/node";

export interface Grade {
  readonly passed: boolean;
  readonly output: string;
  readonly exitCode: number;
}

/**
 * The application code under test: runs a student's Python answer in a fresh sandbox, feeds
 * it the input on stdin and compares what it prints with the expected answer.
 */
export async function grade(client: SandboxClient, source: string, input: string, expected: string): Promise<Grade> {
  await using sandbox = await client.sandboxes.create({ app: "grader", timeoutMs: 60_000 });
  const process = await sandbox.exec(["python3", "-c", source], { timeoutMs: 10_000 });
  await process.stdin.write(input);
  await process.stdin.close();
  const [output, exitCode] = await Promise.all([process.stdout.readText(), process.wait()]);
  return { passed: exitCode === 0 && output.trim() === expected.trim(), output, exitCode };
}
