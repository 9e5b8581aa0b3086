/**
 * One attempt of a container or script template, as a child process: no
 * shell, no Docker. stdout and stderr go to the task's log file; stdout is
 * also kept (as Argo's outputs.result) and the last lines of both make the
 * failure message. A deadline or a stop sends SIGTERM to the child's process
 * group, then SIGKILL after a grace.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';

const RESULT_LIMIT = 256 * 1024; // Argo caps outputs.result at 256 kB
const TAIL_LINES = 20;

export interface ChildSpec {
  argv: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  logFile: string;
  /** Header line written to the log before the output. */
  header: string;
  deadlineMs?: number;
  signal?: AbortSignal;
  killGraceMs: number;
}

export interface ChildOutcome {
  exitCode?: number;
  /** The signal that ended the child, if any. */
  exitSignal?: string;
  /** The child could not be started (ENOENT, EACCES…). */
  spawnError?: Error;
  deadlineExceeded: boolean;
  aborted: boolean;
  stdout: string;
  stdoutTruncated: boolean;
  tail: string[];
}

class Tail {
  private lines: string[] = [];
  private partial = '';
  push(chunk: string): void {
    const parts = (this.partial + chunk).split(/\r?\n/);
    this.partial = parts.pop() ?? '';
    for (const l of parts) this.add(l);
  }
  private add(l: string): void {
    if (l.trim() === '') return;
    this.lines.push(l);
    if (this.lines.length > TAIL_LINES) this.lines.shift();
  }
  get(): string[] {
    return this.partial.trim() ? [...this.lines, this.partial].slice(-TAIL_LINES) : [...this.lines];
  }
}

function openLog(file: string): Promise<WriteStream> {
  return new Promise((resolve, reject) => {
    const s = createWriteStream(file, { flags: 'a', mode: 0o600 });
    s.once('open', () => resolve(s));
    s.once('error', reject);
  });
}

export async function runChild(spec: ChildSpec): Promise<ChildOutcome> {
  const log = await openLog(spec.logFile);
  log.write(spec.header.endsWith('\n') ? spec.header : `${spec.header}\n`);
  const tail = new Tail();
  let stdout = '';
  let truncated = false;
  let deadlineExceeded = false;
  let aborted = false;

  const outcome = await new Promise<ChildOutcome>((resolve) => {
    const [file, ...args] = spec.argv;
    const child = spawn(file!, args, { cwd: spec.cwd, env: spec.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let killTimer: NodeJS.Timeout | undefined;
    let deadlineTimer: NodeJS.Timeout | undefined;
    const kill = (): void => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      const group = -child.pid;
      try {
        process.kill(group, 'SIGTERM');
      } catch {
        child.kill('SIGTERM');
      }
      killTimer = setTimeout(() => {
        try {
          process.kill(group, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      }, spec.killGraceMs);
      killTimer.unref();
    };
    const onAbort = (): void => {
      aborted = true;
      kill();
    };
    if (spec.deadlineMs !== undefined) {
      deadlineTimer = setTimeout(() => {
        deadlineExceeded = true;
        kill();
      }, spec.deadlineMs);
    }
    if (spec.signal?.aborted) onAbort();
    else spec.signal?.addEventListener('abort', onAbort, { once: true });

    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      log.write(d);
      tail.push(d);
      if (stdout.length < RESULT_LIMIT) {
        stdout += d;
        if (stdout.length > RESULT_LIMIT) {
          stdout = stdout.slice(0, RESULT_LIMIT);
          truncated = true;
        }
      } else truncated = true;
    });
    child.stderr.on('data', (d: string) => {
      log.write(d);
      tail.push(d);
    });
    let spawnError: Error | undefined;
    let done = false;
    const finish = (code: number | null, sig: NodeJS.Signals | null): void => {
      if (done) return;
      done = true;
      if (deadlineTimer) clearTimeout(deadlineTimer);
      if (killTimer) clearTimeout(killTimer);
      spec.signal?.removeEventListener('abort', onAbort);
      // The child is gone; make sure nothing it started outlives the attempt.
      if (child.pid !== undefined && !spawnError) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* group already gone */
        }
      }
      resolve({
        ...(code !== null ? { exitCode: code } : {}),
        ...(sig ? { exitSignal: sig } : {}),
        ...(spawnError ? { spawnError } : {}),
        deadlineExceeded,
        aborted,
        stdout,
        stdoutTruncated: truncated,
        tail: tail.get(),
      });
    };
    child.once('error', (e) => {
      spawnError = e;
      if (child.pid === undefined) finish(null, null);
    });
    child.once('close', finish);
  });
  if (outcome.spawnError) log.write(`capflow runner: cannot start ${spec.argv[0]}: ${outcome.spawnError.message}\n`);
  await new Promise<void>((r) => log.end(r));
  return outcome;
}
