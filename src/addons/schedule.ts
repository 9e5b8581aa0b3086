/**
 * Running addons in dependency order: each starts as soon as every addon it depends on finished
 * (not level by level, so a slow addon holds up only its dependants), at most `concurrency` at a
 * time, ties by the given order. A failure stops its dependants (reported as skipped, with the
 * reason) and lets independent addons finish; the first failure is rethrown at the end. Validation
 * has already refused cycles and unknown dependencies (src/spec/references.ts); they are checked
 * again here so that no caller can hang on one.
 */
import { InternalError } from '../core/errors.js';

export interface ScheduledItem {
  name: string;
  dependsOn: readonly string[];
}

export interface ScheduleOutcome {
  done: string[];
  failed: Array<{ name: string; error: unknown }>;
  /** Not started because an addon they depend on (directly or not) failed. */
  skipped: Array<{ name: string; because: string }>;
}

export async function runInDependencyOrder<T extends ScheduledItem>(items: readonly T[], run: (item: T) => Promise<void>, opts: { concurrency?: number; signal?: AbortSignal } = {}): Promise<ScheduleOutcome> {
  const names = new Set(items.map((i) => i.name));
  for (const i of items) for (const d of i.dependsOn) if (!names.has(d)) throw new InternalError('ADDON_DEPENDENCY_UNKNOWN', `addon ${i.name} depends on ${d}, which is not in this run`);
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  const outcome: ScheduleOutcome = { done: [], failed: [], skipped: [] };
  const finished = new Set<string>();
  const blocked = new Map<string, string>();
  const waiting = [...items];
  const running = new Map<string, Promise<void>>();

  const settle = (name: string) => {
    finished.add(name);
    running.delete(name);
  };
  for (;;) {
    // dependants of a failure are skipped, transitively
    for (let changed = true; changed; ) {
      changed = false;
      for (const item of [...waiting]) {
        const cause = item.dependsOn.find((d) => blocked.has(d) || outcome.failed.some((f) => f.name === d));
        if (cause === undefined) continue;
        const because = blocked.get(cause) ?? cause;
        outcome.skipped.push({ name: item.name, because });
        blocked.set(item.name, because);
        waiting.splice(waiting.indexOf(item), 1);
        changed = true;
      }
    }
    while (running.size < concurrency && !opts.signal?.aborted) {
      const next = waiting.find((i) => i.dependsOn.every((d) => finished.has(d) && !blocked.has(d)));
      if (!next) break;
      waiting.splice(waiting.indexOf(next), 1);
      running.set(
        next.name,
        run(next).then(
          () => {
            outcome.done.push(next.name);
            settle(next.name);
          },
          (error: unknown) => {
            outcome.failed.push({ name: next.name, error });
            settle(next.name);
          },
        ),
      );
    }
    if (running.size === 0) break;
    await Promise.race(running.values());
  }
  if (waiting.length > 0 && !opts.signal?.aborted) {
    throw new InternalError('ADDON_DEPENDENCY_CYCLE', `addons ${waiting.map((w) => w.name).join(', ')} wait on each other`);
  }
  if (outcome.failed.length > 0) {
    const first = outcome.failed[0]!.error;
    if (first instanceof Error && outcome.failed.length + outcome.skipped.length > 1) {
      first.message += ` (also: ${[...outcome.failed.slice(1).map((f) => `${f.name} failed`), ...outcome.skipped.map((s) => `${s.name} skipped, as ${s.because} failed`)].join('; ')})`;
    }
    throw first;
  }
  opts.signal?.throwIfAborted();
  return outcome;
}
