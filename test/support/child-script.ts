/**
 * Runs a TypeScript snippet in a child node (through tsx) and reports when it exited, for tests that
 * check a part leaves no timer or connection behind: the child must exit by itself once its work is
 * done. The snippet prints one JSON line, including `stoppedAt` (Date.now() after its stop call).
 */
import { expect } from 'chai';
import { REPO_ROOT, run } from './tools.js';

export async function runChildScript<T extends { stoppedAt: number }>(script: string, env: NodeJS.ProcessEnv): Promise<{ out: T; exitDelayMs: number }> {
  const res = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    timeoutMs: 20_000,
  });
  const exitedAt = Date.now();
  expect(res.signal, res.stderr).to.equal(null);
  expect(res.code, res.stderr).to.equal(0);
  const out = JSON.parse(res.stdout.trim()) as T;
  return { out, exitDelayMs: exitedAt - out.stoppedAt };
}
