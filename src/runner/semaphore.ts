/**
 * Argo `synchronization` semaphores, locally: a directory per semaphore holding up to `limit`
 * slot directories (mkdir is atomic), each with its owner's pid. Runs in this process take turns
 * in FIFO order to look for a free slot; runs in other processes poll. A slot whose owner process
 * is gone is stale and taken over; so is one without an owner file after a grace period (its owner
 * died between mkdir and writing the file).
 */
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { InputError } from '../core/errors.js';
import { abortError, alive, defaultLockDir, parseOwner, sleep, type MutexOptions } from './mutex.js';

/** An owner file missing this long after its slot was made means its owner died in between. */
const ORPHAN_GRACE_MS = 10_000;

const turns = new Map<string, Promise<void>>();

/** `<configmap>/<key>`: how a semaphore is named in events, lock directories and messages. */
export function semaphoreName(configMap: string, key: string): string {
  return `${configMap}/${key}`;
}

/** The semaphore's limit from the ConfigMaps the run was given, as Argo reads it (a whole number). */
export function semaphoreLimit(configMaps: Record<string, Record<string, string>> | undefined, configMap: string, key: string): number {
  const data = configMaps?.[configMap];
  if (!data) {
    throw new InputError('RUNNER_SEMAPHORE_CONFIG', `semaphore ${semaphoreName(configMap, key)}: no ConfigMap "${configMap}" was given to the local runner`, {
      hint: 'pass it with `capflow run --config-map FILE` (a ConfigMap YAML) or RunOptions.configMaps',
    });
  }
  const text = data[key];
  if (text === undefined) {
    throw new InputError('RUNNER_SEMAPHORE_CONFIG', `semaphore ${semaphoreName(configMap, key)}: ConfigMap "${configMap}" has no key "${key}"`, {
      hint: `its keys: ${Object.keys(data).sort().join(', ') || '(none)'}`,
    });
  }
  if (!/^\s*\d{1,6}\s*$/.test(text) || Number(text) < 1) {
    throw new InputError('RUNNER_SEMAPHORE_CONFIG', `semaphore ${semaphoreName(configMap, key)}: the limit must be a whole number >= 1, not "${text}"`);
  }
  return Number(text);
}

export interface SemaphoreOptions extends MutexOptions {
  limit: number;
}

/** Takes one of the semaphore's `limit` slots; resolves to its release function. */
export async function acquireSemaphore(name: string, options: SemaphoreOptions): Promise<() => Promise<void>> {
  const dir = path.join(options.lockDir ?? defaultLockDir(), `${encodeURIComponent(name)}.semaphore`);
  const key = dir;
  // Our turn to look for a slot comes once the earlier askers in this process have one.
  const previous = turns.get(key) ?? Promise.resolve();
  let endTurn!: () => void;
  const mine = new Promise<void>((r) => (endTurn = r));
  const tail = previous.then(() => mine);
  turns.set(key, tail);
  let waited = false;
  const wait = (): void => {
    if (!waited) {
      waited = true;
      options.onWait?.();
    }
  };
  try {
    // Waiting for our turn is not waiting for a slot (the turn only takes a mkdir): no onWait here.
    await Promise.race([
      previous,
      new Promise<never>((_, reject) => {
        if (options.signal?.aborted) reject(abortError(options.signal));
        options.signal?.addEventListener('abort', () => reject(abortError(options.signal!)), { once: true });
      }),
    ]);
    await mkdir(dir, { recursive: true });
    for (;;) {
      const slot = await takeFreeSlot(dir, options);
      if (slot) {
        endTurn();
        if (turns.get(key) === tail) turns.delete(key);
        let released = false;
        return async () => {
          if (released) return;
          released = true;
          await rm(slot, { recursive: true, force: true });
        };
      }
      wait();
      await sleep(options.pollMs ?? 100, options.signal);
    }
  } catch (e) {
    void previous.then(() => endTurn());
    throw e;
  }
}

async function takeFreeSlot(dir: string, options: SemaphoreOptions): Promise<string | undefined> {
  for (let i = 0; i < options.limit; i++) {
    const slot = path.join(dir, `slot-${i}`);
    try {
      await mkdir(slot);
      await writeFile(path.join(slot, 'owner.json'), JSON.stringify({ pid: process.pid, holder: options.holder, since: new Date().toISOString() }));
      return slot;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (await isStale(slot)) {
        await rm(slot, { recursive: true, force: true });
        i--; // try the same slot again
      }
    }
  }
  return undefined;
}

async function isStale(slot: string): Promise<boolean> {
  const owner = await readFile(path.join(slot, 'owner.json'), 'utf8').then(parseOwner, () => undefined);
  if (owner?.pid !== undefined) return owner.pid !== process.pid && !alive(owner.pid);
  const made = await stat(slot).then((s) => s.mtimeMs, () => undefined);
  return made !== undefined && Date.now() - made > ORPHAN_GRACE_MS;
}
