/**
 * Spec loading off the reconciler's event loop. Loading and validating a
 * cluster folder is CPU-bound (a large folder takes seconds); done on the
 * main thread it held up /healthz, webhooks and the Lease renewal. Here each
 * load runs in a worker thread (spec-load-worker.ts), a small pool of them
 * kept while there is work and ended when idle. A worker has a heap limit and
 * each load a time limit: a folder that exceeds either is answered as invalid
 * (the reconciler records phase Invalid with that message) and the worker is
 * replaced; the reconciler itself never runs out of memory or time on a spec.
 */
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { CapflowError, type ErrorKind } from '../core/errors.js';

/**
 * What a load tells the reconciler: the spec hash (and where the Cluster is paused, if it is:
 * `clusters/dev/cluster.yaml:7 spec.paused`), or the problems (`file:line:column ...` lines);
 * warnings either way.
 */
export type SpecLoadResult = ({ specHash: string; warnings: string[]; paused?: string } | { errors: string[]; warnings: string[] }) & {
  /** Paths outside the folder that the load read (AddonCharts' chart folders, a ClusterClass folder), relative to the display root. */
  inputs?: string[];
};

export interface SpecLoader {
  /** Loads the folder `dir`, problems shown relative to `displayRoot`. Rejects only when the load could not be made (not for a bad spec). */
  load(dir: string, displayRoot: string): Promise<SpecLoadResult>;
  /** Ends the workers; loads still waiting are rejected. */
  close(): Promise<void>;
  /** Starts a thread now, if none runs, and keeps one while idle: the next load does not wait for its start. */
  warm?(): void;
}

/** @internal the messages between the pool and its workers */
export interface SpecLoadRequest {
  id: number;
  dir: string;
  displayRoot: string;
}

/** @internal */
export type SpecLoadReply =
  | { ready: true }
  | { id: number; result: SpecLoadResult }
  | { id: number; error: { name: string; message: string; code?: string; kind?: string } };

export interface SpecLoadPoolOptions {
  /** Workers at most (loads beyond wait their turn). Default 1: see the README on memory. */
  workers?: number;
  /** A load taking longer is refused as invalid and its worker ended. Default 60 s. */
  timeoutMs?: number;
  /** A worker's heap limit (V8 old generation, MB); a load needing more is refused as invalid. Default 256. */
  maxHeapMb?: number;
  /** A worker idle this long is ended (it is started again for the next load). Default 60 s. */
  idleMs?: number;
}

export const SPEC_LOAD_DEFAULTS = { workers: 1, timeoutMs: 60_000, maxHeapMb: 256, idleMs: 60_000 } as const;

interface Job {
  req: SpecLoadRequest;
  resolve: (r: SpecLoadResult) => void;
  reject: (e: unknown) => void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
  timer: NodeJS.Timeout | undefined;
  idleTimer: NodeJS.Timeout | undefined;
  /** Set once the worker is being ended on purpose (timeout, idle, close). */
  ending: boolean;
  /** The worker has loaded its modules: a load's time counts from then. */
  ready: boolean;
}

/** The pool; `new SpecLoadPool()` starts no thread until the first load. */
export class SpecLoadPool implements SpecLoader {
  private readonly o: Required<SpecLoadPoolOptions>;
  private readonly slots = new Set<Slot>();
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;
  /** warm() was called: one thread is kept while idle (and started again when it ends). */
  private keep = false;

  constructor(options: SpecLoadPoolOptions = {}) {
    this.o = {
      workers: Math.max(1, Math.floor(options.workers ?? SPEC_LOAD_DEFAULTS.workers)),
      timeoutMs: options.timeoutMs ?? SPEC_LOAD_DEFAULTS.timeoutMs,
      maxHeapMb: options.maxHeapMb ?? SPEC_LOAD_DEFAULTS.maxHeapMb,
      idleMs: options.idleMs ?? SPEC_LOAD_DEFAULTS.idleMs,
    };
  }

  load(dir: string, displayRoot: string): Promise<SpecLoadResult> {
    if (this.closed) return Promise.reject(new Error('the spec loader is closed'));
    return new Promise<SpecLoadResult>((resolve, reject) => {
      this.queue.push({ req: { id: this.nextId++, dir, displayRoot }, resolve, reject });
      this.dispatch();
    });
  }

  warm(): void {
    if (this.closed) return;
    this.keep = true;
    if (this.slots.size > 0) return;
    // no job yet: it must not keep the process alive
    this.spawn().worker.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new Error('the spec loader was closed'));
    await Promise.all(
      [...this.slots].map((slot) => {
        slot.job?.reject(new Error('the spec loader was closed'));
        slot.job = undefined;
        return this.end(slot);
      }),
    );
  }

  /** Threads running now (tests, metrics). */
  get threads(): number {
    return this.slots.size;
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = [...this.slots].find((s) => !s.job && !s.ending);
      if (!slot && this.slots.size < this.o.workers) slot = this.spawn();
      if (!slot) return;
      this.run(slot, this.queue.shift() as Job);
    }
  }

  private run(slot: Slot, job: Job): void {
    clearTimeout(slot.idleTimer);
    slot.idleTimer = undefined;
    slot.job = job;
    slot.worker.ref();
    if (slot.ready) this.startTimer(slot);
    slot.worker.postMessage(job.req);
  }

  private startTimer(slot: Slot): void {
    const job = slot.job;
    if (!job) return;
    slot.timer = setTimeout(() => {
      this.settle(slot, { errors: [`${displayOf(job.req)}: loading the spec took longer than ${seconds(this.o.timeoutMs)}; refused (a folder that slow to read is huge or hostile; if it is meant, raise --spec-load-timeout)`], warnings: [] });
      void this.end(slot);
    }, this.o.timeoutMs);
  }

  private spawn(): Slot {
    const worker = startWorker(this.o.maxHeapMb);
    const slot: Slot = { worker, job: undefined, timer: undefined, idleTimer: undefined, ending: false, ready: false };
    this.slots.add(slot);
    worker.on('message', (reply: SpecLoadReply) => {
      if ('ready' in reply) {
        slot.ready = true;
        this.startTimer(slot);
        return;
      }
      if (!slot.job || slot.job.req.id !== reply.id) return;
      if ('result' in reply) this.settle(slot, reply.result);
      else this.settle(slot, undefined, rebuildError(reply.error));
      this.idle(slot);
    });
    worker.on('error', (err: Error & { code?: string }) => {
      const job = slot.job;
      if (job && err.code === 'ERR_WORKER_OUT_OF_MEMORY') {
        this.settle(slot, { errors: [`${displayOf(job.req)}: loading the spec needed more than ${this.o.maxHeapMb} MB of memory; refused (a folder that large to read is huge or hostile; if it is meant, raise --spec-load-memory: a folder of short keys at the spec size limits needs about 300 MB)`], warnings: [] });
      } else if (job) {
        this.settle(slot, undefined, new Error(`the spec-loading worker failed: ${err.message}`, { cause: err }));
      }
      slot.ending = true;
    });
    worker.on('exit', (code) => {
      this.slots.delete(slot);
      clearTimeout(slot.timer);
      clearTimeout(slot.idleTimer);
      if (slot.job) this.settle(slot, undefined, new Error(`the spec-loading worker exited (code ${code}) during a load`));
      if (this.closed) return;
      this.dispatch();
      if (this.keep && this.slots.size === 0) this.spawn().worker.unref(); // replaced after a refused load
    });
    return slot;
  }

  private settle(slot: Slot, result: SpecLoadResult | undefined, error?: unknown): void {
    const job = slot.job;
    if (!job) return;
    slot.job = undefined;
    clearTimeout(slot.timer);
    slot.timer = undefined;
    if (result) job.resolve(result);
    else job.reject(error);
  }

  private idle(slot: Slot): void {
    if (this.queue.length > 0) {
      this.dispatch();
      return;
    }
    // an idle worker does not keep the process alive, and ends after a while (but the one warm() keeps)
    slot.worker.unref();
    if (this.keep && [...this.slots].filter((s) => !s.ending && s !== slot).length === 0) return;
    slot.idleTimer = setTimeout(() => void this.end(slot), this.o.idleMs);
    slot.idleTimer.unref();
  }

  private async end(slot: Slot): Promise<void> {
    slot.ending = true;
    clearTimeout(slot.idleTimer);
    clearTimeout(slot.timer);
    await slot.worker.terminate();
  }
}

function startWorker(maxHeapMb: number): Worker {
  const options = { resourceLimits: { maxOldGenerationSizeMb: maxHeapMb }, execArgv: workerExecArgv(process.execArgv) };
  const self = fileURLToPath(import.meta.url);
  const ext = path.extname(self);
  const entry = new URL(`./spec-load-worker${ext}`, import.meta.url);
  if (ext === '.js') return new Worker(entry, options);
  // Running from TypeScript sources (tests under tsx): the worker registers tsx before it imports its entry.
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(code, { ...options, eval: true });
}

/** The process's Node options, less those about its own entry (`-e CODE`, `--input-type`), which a worker refuses. */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i] as string;
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print') {
      i++;
      continue;
    }
    if (/^--(input-type|eval|print)(=|$)/.test(a)) continue;
    out.push(a);
  }
  return out;
}

function rebuildError(e: { name: string; message: string; code?: string; kind?: string }): Error {
  const err = e.code !== undefined && e.kind !== undefined ? new CapflowError(e.kind as ErrorKind, e.code, e.message) : new Error(e.message);
  err.name = e.name;
  return err;
}

/** The folder as problems show it: relative to the display root. */
export function displayOf(req: SpecLoadRequest): string {
  const rel = path.relative(req.displayRoot, req.dir);
  return (rel === '' ? '.' : rel).split(path.sep).join('/');
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
