/**
 * Argo `synchronization` mutexes, locally: one lock directory per mutex name
 * (mkdir is atomic), holding the owner's pid. Runs in this process queue in
 * FIFO order before they touch the filesystem; runs in other processes poll.
 * A lock whose owner process is gone is stale and taken over.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export function defaultLockDir(): string {
  return path.join(os.tmpdir(), 'capflow-mutex');
}

const queues = new Map<string, Promise<void>>();

function lockPath(dir: string, name: string): string {
  return path.join(dir, `${encodeURIComponent(name)}.lock`);
}

/** The owner file, or undefined while its writer is still writing it (another process may read it half-written). */
export function parseOwner(text: string): { pid?: number } | undefined {
  try {
    return JSON.parse(text) as { pid?: number };
  } catch {
    return undefined;
  }
}

/** The lock owner still runs (EPERM: it does, as another user). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The abort's reason as an Error. */
export function abortError(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new Error(String(r));
}

/** A wait the run's abort ends early. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(abortError(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface MutexOptions {
  lockDir?: string;
  signal?: AbortSignal;
  /** Who holds it (written into the lock for operators). */
  holder: string;
  /** Called once when the lock is busy and the caller has to wait. */
  onWait?: () => void;
  pollMs?: number;
}

/** Acquires the named mutex; resolves to its release function. */
export async function acquireMutex(name: string, options: MutexOptions): Promise<() => Promise<void>> {
  const dir = options.lockDir ?? defaultLockDir();
  const key = `${dir}\0${name}`;
  const previous = queues.get(key) ?? Promise.resolve();
  let releaseQueue!: () => void;
  const mine = new Promise<void>((r) => (releaseQueue = r));
  const tail = previous.then(() => mine);
  queues.set(key, tail);
  let waited = false;
  const wait = (): void => {
    if (!waited) {
      waited = true;
      options.onWait?.();
    }
  };
  try {
    // Wait for earlier holders in this process.
    let settled = false;
    void previous.then(() => (settled = true));
    await Promise.resolve();
    if (!settled) wait();
    await Promise.race([
      previous,
      new Promise<never>((_, reject) => {
        if (options.signal?.aborted) reject(abortError(options.signal));
        options.signal?.addEventListener('abort', () => reject(abortError(options.signal!)), { once: true });
      }),
    ]);
    // Then take the filesystem lock (other processes).
    await mkdir(dir, { recursive: true });
    const lock = lockPath(dir, name);
    for (;;) {
      try {
        await mkdir(lock);
        await writeFile(path.join(lock, 'owner.json'), JSON.stringify({ pid: process.pid, holder: options.holder, since: new Date().toISOString() }));
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        // Half-written by its taker in another process: not stale, wait (parseOwner).
        const owner = await readFile(path.join(lock, 'owner.json'), 'utf8').then(parseOwner, () => undefined);
        if (owner?.pid !== undefined && owner.pid !== process.pid && !alive(owner.pid)) {
          await rm(lock, { recursive: true, force: true });
          continue;
        }
        wait();
        await sleep(options.pollMs ?? 100, options.signal);
      }
    }
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      await rm(lock, { recursive: true, force: true });
      releaseQueue();
      if (queues.get(key) === tail) queues.delete(key);
    };
  } catch (e) {
    // Give our place in the queue to the next one once our turn would come.
    void previous.then(() => releaseQueue());
    throw e;
  }
}
