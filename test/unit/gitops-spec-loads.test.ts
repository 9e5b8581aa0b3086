// Issue 10 item 5: the reconciler loads specs in worker threads (SpecLoadPool), so a huge or hostile
// folder never holds up its event loop; one over the time or memory limit is answered as invalid.
// Timing assertions are about the event loop only (a heartbeat timer keeps ticking), never about
// how fast this machine loads a spec.
import { expect } from 'chai';
import { SpecLoadPool } from '../../src/gitops/spec-loads.js';
import { cleanupSpecFolders, displayRootOf, minimalAws, specFolder } from '../fixtures/spec/support.js';

/** A valid ConfigMap of `keys` keys, about 55 bytes each: costly to parse (key-dense), well inside the limits. */
function bigConfigMap(keys: number, name: string): string {
  const lines = ['apiVersion: v1', 'kind: ConfigMap', 'metadata:', `  name: ${name}`, 'data:'];
  for (let i = 0; i < keys; i++) lines.push(`  key${i}: "value-${i}-${'x'.repeat(30)}"`);
  return `${lines.join('\n')}\n`;
}

/** Largest gap between the ticks of a 20 ms timer while `work` runs. */
async function maxTimerGap<T>(work: () => Promise<T>): Promise<{ result: T; maxGapMs: number }> {
  let last = performance.now();
  let maxGapMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
  }, 20);
  try {
    const result = await work();
    maxGapMs = Math.max(maxGapMs, performance.now() - last);
    return { result, maxGapMs };
  } finally {
    clearInterval(timer);
  }
}

describe('gitops spec loads in worker threads', function () {
  this.timeout(120_000);
  const pools: SpecLoadPool[] = [];
  const pool = (o: ConstructorParameters<typeof SpecLoadPool>[0] = {}): SpecLoadPool => {
    const p = new SpecLoadPool(o);
    pools.push(p);
    return p;
  };
  let hugeDir = '';
  let okDir = '';
  before(async () => {
    // two 1.9 MB key-dense ConfigMaps: within the limits, seconds of parsing
    hugeDir = await specFolder(minimalAws({ 'a.yaml': bigConfigMap(36_000, 'a'), 'b.yaml': bigConfigMap(36_000, 'b') }));
    okDir = await specFolder(minimalAws());
  });
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });
  after(cleanupSpecFolders);

  it('a huge folder loads while the event loop keeps ticking (no gap of a second), with the same answer as a load on the main thread would give', async () => {
    const p = pool();
    // the worker's start (module loading) is not what is measured
    expect(await p.load(okDir, displayRootOf(okDir))).to.have.property('specHash');
    const { result, maxGapMs } = await maxTimerGap(() => p.load(hugeDir, displayRootOf(hugeDir)));
    expect(result).to.have.property('specHash').that.matches(/^[0-9a-f]{64}$/);
    expect(result.warnings.join('\n')).to.include('clusters/test/a.yaml:4:9 ConfigMap/a metadata.name: warning: ConfigMap "a" is not referenced');
    expect(maxGapMs, 'longest gap between timer ticks (ms)').to.be.below(1_000);
  });

  it('a load over the time limit is answered as invalid, naming the folder and the limit; the next load gets a fresh worker', async () => {
    const p = pool({ timeoutMs: 100 });
    await p.load(okDir, displayRootOf(okDir)).catch(() => undefined); // a started worker: the limit counts from its first load
    const threads = p.threads;
    const result = await p.load(hugeDir, displayRootOf(hugeDir));
    expect(result).to.deep.equal({ errors: ['clusters/test: loading the spec took longer than 0.1 s; refused (a folder that slow to read is huge or hostile; if it is meant, raise --spec-load-timeout)'], warnings: [] });
    expect(threads).to.equal(1);
    // the pool goes on: the next load is answered (by a new worker), not left hanging
    const next = await p.load(okDir, displayRootOf(okDir));
    expect('specHash' in next || next.errors[0]?.includes('took longer')).to.equal(true);
  });

  it('a load over the memory limit is answered as invalid (the worker, not the process, runs out); the pool goes on with a new worker', async () => {
    const p = pool({ maxHeapMb: 32 });
    const { result, maxGapMs } = await maxTimerGap(() => p.load(hugeDir, displayRootOf(hugeDir)));
    expect('errors' in result && result.errors).to.deep.equal(['clusters/test: loading the spec needed more than 32 MB of memory; refused (a folder that large to read is huge or hostile; if it is meant, raise --spec-load-memory: a folder of short keys at the spec size limits needs about 300 MB)']);
    expect(maxGapMs, 'longest gap between timer ticks (ms)').to.be.below(1_000);
    expect(await p.load(okDir, displayRootOf(okDir))).to.have.property('specHash');
  });

  it('an invalid spec is answered with its problems; a folder the loader throws on is answered as invalid with the coded reason, so the reconciler records it', async () => {
    const p = pool();
    const bad = await specFolder(minimalAws({ 'extra.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  name: y\n' }));
    expect(await p.load(bad, displayRootOf(bad))).to.deep.equal({
      errors: ['clusters/test/extra.yaml:5:3 YAML: Map keys must be unique: "name" is already a key of this map at line 4'],
      warnings: [],
    });
    const gone = await p.load('/nonexistent/capflow-folder', '/');
    expect(gone).to.deep.equal({
      errors: ['nonexistent/capflow-folder: capflow could not load this cluster folder: [SPEC_DIR_NOT_FOUND] Cluster spec folder /nonexistent/capflow-folder does not exist or is not a folder'],
      warnings: [],
    });
  });

  it('loads beyond the worker count wait their turn; an idle worker ends; close() rejects what still waits', async () => {
    const p = pool({ workers: 2, idleMs: 100 });
    const results = await Promise.all(Array.from({ length: 5 }, () => p.load(okDir, displayRootOf(okDir))));
    expect(new Set(results.map((r) => ('specHash' in r ? r.specHash : 'invalid'))).size).to.equal(1);
    expect(p.threads).to.be.at.most(2);
    await new Promise((r) => setTimeout(r, 500));
    expect(p.threads).to.equal(0);
    const waiting = p.load(hugeDir, displayRootOf(hugeDir)).then(
      () => 'resolved',
      (e: Error) => e.message,
    );
    await p.close();
    expect(await waiting).to.equal('the spec loader was closed');
  });

  it('warm() starts a thread before any load and keeps one while idle (the others still end); a thread ended after a refused load is started again', async () => {
    const p = pool({ workers: 2, idleMs: 100, timeoutMs: 300 });
    p.warm();
    expect(p.threads).to.equal(1);
    await Promise.all(Array.from({ length: 4 }, () => p.load(okDir, displayRootOf(okDir))));
    await new Promise((r) => setTimeout(r, 500));
    expect(p.threads, 'one kept warm').to.equal(1);
    const refused = await p.load(hugeDir, displayRootOf(hugeDir));
    expect(refused).to.have.property('errors');
    await new Promise((r) => setTimeout(r, 500));
    expect(p.threads, 'replaced').to.equal(1);
    expect(await p.load(okDir, displayRootOf(okDir))).to.have.property('specHash');
  });
});
