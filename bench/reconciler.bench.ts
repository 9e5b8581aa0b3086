/**
 * The reconciler with a repository of 1,000 clusters (the byoh example renamed per cluster) in a real
 * git remote, against envtest (kube-apiserver + etcd with the Argo CRDs). The reconciler is the built
 * command, `capflow reconcile`, in its own process (so its memory is its own), driven by signed GitHub
 * push webhooks to its real HTTP server; pass durations come from its "pass done" log lines. Figures:
 *
 *   - the first (cold) pass: clone, load and hash 1,000 specs, write 1,000 records, submit 1,000
 *     cluster-apply Workflows
 *   - a full pass with nothing changed (the same head, and a new commit that touches no cluster)
 *   - a full pass with one cluster changed (one submission)
 *   - webhook → Workflow object: from the POST until a watch sees the Workflow, over ~15 pushes
 *   - the same steady-state passes in a second reconciler, restarted (fresh clone) over the records
 *     the first one left: its first pass loads nothing, and its memory is the steady state's without
 *     what the cold pass left behind
 *
 * Also where each kind of pass spent its time: the medians of the `ms` its log line gives per step
 * (fetch, list, watches, files, load, records, submit, state).
 *
 * Wall times are medians of N (webhook POST to the pass logged); memory is the reconciler's RSS
 * (VmRSS) after each kind of pass and its peak (VmHWM) so far, per process. No Argo controller runs: the bench
 * marks the cold pass's Workflows Succeeded itself, as the controller would. Prints; asserts nothing.
 * The reconciler turns on V8's --optimize-for-size itself; CAPFLOW_OPTIMIZE_FOR_SIZE=false in the
 * bench's environment leaves V8's defaults (to compare), BENCH_NODE_FLAGS adds node flags.
 *
 *   npm run build && [BENCH_SEED=1] node --import tsx bench/reconciler.bench.ts [clusters=1000] [runs=7] [pushes=15]
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { CoreV1Api, CustomObjectsApi, Watch } from '@kubernetes/client-node';
import { freePorts, schemaPath, startEnvtest } from '../test/support/envtest.js';
import { createGitRemote, git } from '../test/support/git-remote.js';
import { ConfigMapRecordStore } from '../src/gitops/records.js';
import { shareAgents } from '../src/gitops/kube.js';
import { ARGO, githubPush, listRecords, manyClusterFiles, postWebhook, succeeded, withReplicas, type WorkflowObj } from '../test/support/gitops.js';
import { REPO_ROOT } from '../test/support/tools.js';

const bin = path.join(REPO_ROOT, 'dist', 'bin', 'capflow.js');
if (!existsSync(bin)) {
  console.error('dist/ is missing: run npm run build first');
  process.exit(1);
}
const CLUSTERS = Number(process.argv[2] ?? 1000);
const RUNS = Number(process.argv[3] ?? 7);
const PUSHES = Number(process.argv[4] ?? 15);
const NS = 'capflow-system';
/** Extra node flags for the reconciler processes (e.g. heap settings), printed with the results. */
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
const SECRET = 'bench-secret';
/**
 * BENCH_SEED=1: a stand-in for the cold pass and the following of its runs, which take many minutes
 * at 10,000 clusters: the bench writes every record itself, as the reconciler would have left it
 * (Succeeded at the first commit, the folder's tree id, hashed by this version) with a stand-in spec
 * hash per tree (`sha256:seed-<tree>`, not the real hash: a changed folder is loaded and gets its
 * real one, which differs, so it is submitted as a real change would be). No Workflow objects exist.
 */
const SEED = process.env.BENCH_SEED === '1';

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(0);
const ms = (x: number): string => x.toFixed(0);
const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));

const names = Array.from({ length: CLUSTERS }, (_, i) => `c${String(i + 1).padStart(4, '0')}`);
const rows: Array<{ proc: string; what: string; n: number; wallMs: number; passMs: number; maxPassMs: number; submitted: string; loaded: string; decided: string; rss: number; peak: number }> = [];
/** Per kind of pass, the median of each step's ms over its runs. */
const breakdowns: Array<{ what: string; ms: Record<string, number> }> = [];
const medianSteps = (all: Array<Record<string, number>>): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const k of new Set(all.flatMap((m) => Object.keys(m)))) out[k] = median(all.map((m) => m[k] ?? 0));
  return out;
};
/** Passes that ended between a push and the pass that carried it: not the push's, so not measured. */
const otherPasses: string[] = [];
let procLabel = 'A';

interface Pass {
  at: number;
  reason: string;
  durationMs: number;
  submitted: number;
  loaded: number;
  /** Every cluster decided (else only those something happened to), and how many were. */
  full: boolean;
  decided: number;
  /** Where the pass's time went (the log line's `ms`: fetch, list, watches, files, load, records, submit, state). */
  ms: Record<string, number>;
}
interface ReconcilerProcess {
  passes: Pass[];
  /** VmRSS and VmHWM (peak) of the reconciler, bytes. */
  memory(): { rss: number; peak: number };
  /**
   * Resolves with the first pass logged after `from` passes whose reason names `commit` (its first
   * 12 characters, as the webhook's reason gives it); any pass when commit is undefined. A pass that
   * started before the push (queued by something else) does not carry it.
   */
  nextPass(from: number, commit?: string, timeoutMs?: number): Promise<Pass>;
  /** SIGTERM, and the exit. */
  stop(): Promise<void>;
}

const env = await startEnvtest({ crds: [schemaPath('argo', 'argoproj.io_workflows.yaml')] });
const remote = await createGitRemote();
const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-reconciler-'));
const kc = env.makeKubeConfig();
let stopChild: (() => void) | undefined;
const cacheDirs = [cacheDir];
try {
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
  const t0 = performance.now();
  const rev0 = await remote.commitFiles(manyClusterFiles(names), `${CLUSTERS} clusters`);
  await remote.push();
  const repoMs = performance.now() - t0;
  let seedMs = NaN;
  if (SEED) {
    const t = performance.now();
    const listing = await git(remote.workdir, 'ls-tree', '-z', rev0, 'clusters/');
    const trees = new Map<string, string>();
    for (const entry of listing.split('\0')) {
      const m = /^040000 tree ([0-9a-f]+)\tclusters\/(.+)$/.exec(entry);
      if (m) trees.set(m[2]!, m[1]!);
    }
    const version = (JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const store = new ConfigMapRecordStore(shareAgents(env.makeKubeConfig()), NS);
    const at = new Date().toISOString();
    const queue = [...names];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let name = queue.shift(); name; name = queue.shift()) {
          const tree = trees.get(name)!;
          const hash = `sha256:seed-${tree}`;
          await store.put({ cluster: name, path: `clusters/${name}`, phase: 'Succeeded', gitRevision: rev0, gitTree: tree, specHash: hash, hashedBy: version, appliedRevision: rev0, appliedSpecHash: hash, appliedAt: at, failures: 0, drift: 'Unknown', planCount: 0 });
        }
      }),
    );
    seedMs = performance.now() - t;
  }

  // the reconciler: the built command, as a child process, so its memory is its own
  const [port] = await freePorts(1);
  const url = `http://127.0.0.1:${port}`;
  let proc = startReconciler(cacheDir);
  const tStart = performance.now();
  // Each push a distinct body (its own `before`): the reconciler answers a body it has seen as a replay.
  let pushes = 0;
  const hook = async (after: string): Promise<void> => {
    const before = (++pushes).toString(16).padStart(40, '0');
    const res = await postWebhook(`${url}/webhooks/github`, githubPush(SECRET, { after, before }));
    if (res.status !== 202) throw new Error(`webhook answered ${res.status}: ${res.body}`);
  };

  /** `capflow reconcile` in its own process; its "pass done" log lines, memory, and a way to stop it. */
  function startReconciler(cache: string, pollInterval = '1h'): ReconcilerProcess {
    const passes: Pass[] = [];
    let onPass: (() => void) | undefined;
    let stopping = false;
    const child = spawn(
      process.execPath,
      [...NODE_FLAGS, bin, 'reconcile', '--repo', remote.url, '--namespace', NS, '--kubeconfig', env.kubeconfigPath, '--cache-dir', cache, '--listen', `127.0.0.1:${port}`,
        '--poll-interval', pollInterval, '--drift-interval', '0', '--no-leader-elect', '--retry-backoff', '1h', '--log-format', 'json', '--log-level', 'debug'],
      { env: { ...process.env, CAPFLOW_WEBHOOK_GITHUB_SECRET: SECRET }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    stopChild = () => {
      stopping = true;
      child.kill('SIGKILL');
    };
    let tail = '';
    createInterface({ input: child.stderr }).on('line', (line) => {
      tail = `${tail}\n${line}`.slice(-4000);
      let entry: { message?: string; reason?: string; durationMs?: number; submitted?: number; loaded?: number; full?: boolean; decided?: number; ms?: Record<string, number> };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      if (typeof entry.message === 'string' && entry.message.startsWith('pass done')) {
        passes.push({
          at: performance.now(),
          reason: entry.reason ?? '',
          durationMs: entry.durationMs ?? NaN,
          submitted: entry.submitted ?? 0,
          loaded: entry.loaded ?? 0,
          full: entry.full ?? true,
          decided: entry.decided ?? NaN,
          ms: entry.ms ?? {},
        });
        onPass?.();
      }
    });
    const exited = new Promise<void>((resolve) =>
      child.on('exit', (code) => {
        if (!stopping) {
          console.error(`the reconciler exited (${code}):${tail}`);
          process.exit(1);
        }
        resolve();
      }),
    );
    return {
      passes,
      memory: () => {
        const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
        const kb = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) * 1024;
        return { rss: kb('VmRSS'), peak: kb('VmHWM') };
      },
      nextPass: (from, commit, timeoutMs = 1_800_000) =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no pass within ${timeoutMs} ms:${tail}`)), timeoutMs);
          const check = (): void => {
            const i = passes.findIndex((p, j) => j >= from && (commit === undefined || p.reason.includes(commit.slice(0, 12))));
            if (i >= 0) {
              for (const other of passes.slice(from, i)) otherPasses.push(`${procLabel}: ${other.reason} (${other.durationMs} ms)`);
              clearTimeout(timer);
              onPass = undefined;
              resolve(passes[i]!);
            }
          };
          onPass = check;
          check();
        }),
      stop: async () => {
        stopping = true;
        child.kill('SIGTERM');
        await exited;
        stopChild = undefined;
      },
    };
  }
  const idle = async (): Promise<void> => {
    // quiet for 300 ms: no pass queued behind the last one
    for (let n = proc.passes.length; ; n = proc.passes.length) {
      await sleep(300);
      if (proc.passes.length === n) return;
    }
  };

  // cold: the first pass at start (clone, load and hash every spec, submit every cluster)
  const cold = await proc.nextPass(0);
  rows.push({ proc: 'A', what: SEED ? 'first pass (records seeded: stand-in)' : 'first pass (cold, from process start)', n: 1, wallMs: cold.at - tStart, passMs: cold.durationMs, maxPassMs: cold.durationMs, submitted: String(cold.submitted), loaded: String(cold.loaded), decided: String(cold.decided), ...proc.memory() });
  // printed at once too: at 10,000 clusters the rest takes long, and a run cut short still tells this
  console.error(`first pass: ${ms(cold.at - tStart)} ms from process start, pass ${cold.durationMs} ms, loaded ${cold.loaded}, submitted ${cold.submitted}, RSS ${mb(rows[0]!.rss)} MB, peak ${mb(rows[0]!.peak)} MB; steps ${JSON.stringify(cold.ms)}`);
  await idle();

  async function pass(what: string, prepare?: (i: number) => Promise<string>, n = RUNS): Promise<void> {
    const wall: number[] = [];
    const dur: number[] = [];
    const submitted = new Set<number>();
    const loaded = new Set<number>();
    const decided = new Set<string>();
    const steps: Array<Record<string, number>> = [];
    for (let i = 0; i < n; i++) {
      const after = prepare ? await prepare(i) : ((await remote.head()) as string);
      const from = proc.passes.length;
      const t = performance.now();
      await hook(after);
      const p = await proc.nextPass(from, after);
      wall.push(p.at - t);
      dur.push(p.durationMs);
      submitted.add(p.submitted);
      loaded.add(p.loaded);
      decided.add(`${p.decided}${p.full ? ' (full)' : ''}`);
      steps.push(p.ms);
      await idle();
    }
    breakdowns.push({ what: `${procLabel}: ${what}`, ms: medianSteps(steps) });
    rows.push({ proc: procLabel, what, n, wallMs: median(wall), passMs: median(dur), maxPassMs: Math.max(...dur), submitted: [...submitted].join('/'), loaded: [...loaded].join('/'), decided: [...decided].join('/'), ...proc.memory() });
  }

  // play the controller: every cold-pass Workflow Succeeded, then wait for the records to follow
  let followMs = NaN;
  if (!SEED) {
    const api = kc.makeApiClient(CustomObjectsApi);
    const list = (await api.listNamespacedCustomObject({ ...ARGO, namespace: NS })) as { items: WorkflowObj[] };
    const tSucceed = performance.now();
    const queue = [...list.items];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let wf = queue.shift(); wf; wf = queue.shift()) {
          await api.replaceNamespacedCustomObject({ ...ARGO, namespace: NS, name: wf.metadata.name, body: { ...wf, status: succeeded()(wf) } });
        }
      }),
    );
    for (;;) {
      const recs = await listRecords(kc, NS);
      const done = [...recs.values()].filter((r) => r.data.phase === 'Succeeded' && r.data.appliedRevision === rev0).length;
      if (done === CLUSTERS) break;
      if (performance.now() - tSucceed > 300_000) throw new Error(`only ${done} of ${CLUSTERS} records Succeeded after 5 minutes`);
      await sleep(500);
    }
    followMs = performance.now() - tSucceed;
    console.error(`records following ${CLUSTERS} Workflows marked Succeeded: ${ms(followMs)} ms; peak RSS so far ${mb(proc.memory().peak)} MB`);
    await idle();
  }

  /** The three kinds of steady-state pass; `changed` picks the clusters the one-change passes change. */
  const steadyPasses = async (changed: (i: number) => string): Promise<void> => {
    await pass('nothing changed (same head)');
    await pass('nothing changed (new commit, no cluster touched)', async (i) => {
      const sha = await remote.commitFiles({ 'README.md': `bench ${procLabel} ${i}\n` }, `readme ${procLabel} ${i}`);
      await remote.push();
      return sha;
    });
    await pass('one cluster changed', async (i) => {
      const sha = await remote.commitFiles(withReplicas(changed(i), 3), `${changed(i)} changed`);
      await remote.push();
      return sha;
    });
  };
  await steadyPasses((i) => names[i]!);

  // webhook → Workflow object, seen by a watch
  const waiting = new Map<string, (t: number) => void>();
  const watch = await new Watch(kc).watch(
    `/apis/${ARGO.group}/${ARGO.version}/namespaces/${NS}/${ARGO.plural}`,
    {},
    (type, obj: WorkflowObj) => {
      if (type !== 'ADDED') return;
      const rev = obj.metadata.labels?.['capflow.io/revision'];
      const done = rev ? waiting.get(rev) : undefined;
      if (done) done(performance.now());
    },
    () => undefined,
  );
  const latencies: number[] = [];
  const hookSteps: Array<Record<string, number>> = [];
  const hookPassMs: number[] = [];
  try {
    for (let i = 0; i < PUSHES; i++) {
      const name = names[RUNS + i]!;
      const sha = await remote.commitFiles(withReplicas(name, 4), `${name} changed (webhook)`);
      await remote.push();
      await idle();
      const seen = new Promise<number>((resolve, reject) => {
        waiting.set(sha, resolve);
        setTimeout(() => reject(new Error(`no Workflow for ${sha} within 30 s`)), 30_000).unref();
      });
      const from = proc.passes.length;
      const t = performance.now();
      await hook(sha);
      latencies.push((await seen) - t);
      waiting.delete(sha);
      const p = await proc.nextPass(from, sha);
      hookSteps.push(p.ms);
      hookPassMs.push(p.durationMs);
    }
  } finally {
    (watch as { abort(): void }).abort();
  }

  // B: a reconciler restarted over the recorded clusters (a new pod: a fresh clone). Its first pass
  // loads no spec, since every record holds its folder's tree id; this is the steady state's memory
  // without what the cold pass left behind.
  await proc.stop();
  const cacheDirB = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-reconciler-'));
  cacheDirs.push(cacheDirB);
  const tRestart = performance.now();
  proc = startReconciler(cacheDirB);
  procLabel = 'B';
  const warm = await proc.nextPass(0);
  rows.push({ proc: 'B', what: 'first pass (restarted, records in place)', n: 1, wallMs: warm.at - tRestart, passMs: warm.durationMs, maxPassMs: warm.durationMs, submitted: String(warm.submitted), loaded: String(warm.loaded), decided: String(warm.decided), ...proc.memory() });
  await idle();
  await steadyPasses((i) => names[RUNS + PUSHES + i]!);

  // C: the poll's full pass (every cluster decided from the caches), nothing changed: a reconciler
  // polling every 2 s, after its first pass
  await proc.stop();
  const cacheDirC = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-reconciler-'));
  cacheDirs.push(cacheDirC);
  proc = startReconciler(cacheDirC, '2s');
  procLabel = 'C';
  await proc.nextPass(0);
  const polls: Pass[] = [];
  for (let from = 1; polls.length < RUNS; from = proc.passes.length) {
    const p = await proc.nextPass(from);
    if (p.reason === 'poll') polls.push(p);
  }
  const pollMs = polls.map((p) => p.durationMs);
  rows.push({ proc: 'C', what: 'nothing changed (poll: full pass)', n: polls.length, wallMs: NaN, passMs: median(pollMs), maxPassMs: Math.max(...pollMs), submitted: [...new Set(polls.map((p) => p.submitted))].join('/'), loaded: [...new Set(polls.map((p) => p.loaded))].join('/'), decided: [...new Set(polls.map((p) => `${p.decided}${p.full ? ' (full)' : ''}`))].join('/'), ...proc.memory() });
  await proc.stop();

  console.log(`reconciler (capflow reconcile, its own process), ${CLUSTERS} clusters (byoh example renamed), git remote on disk, envtest with Argo CRDs`);
  console.log(
    SEED
      ? `repository commit + push: ${ms(repoMs)} ms; ${CLUSTERS} records seeded by the bench (BENCH_SEED=1, a stand-in for the cold pass and its runs): ${ms(seedMs)} ms`
      : `repository commit + push: ${ms(repoMs)} ms; records following ${CLUSTERS} Workflows marked Succeeded: ${ms(followMs)} ms`,
  );
  console.log('');
  console.log(`A: the process that made the cold pass (and followed its ${CLUSTERS} runs); B: a reconciler restarted afterwards (fresh clone, records in place); C: one polling every 2 s.`);
  console.log('RSS: VmRSS once the pass is done; peak: VmHWM of that process so far.');
  console.log(
    `V8 heap settings: ${process.env.CAPFLOW_OPTIMIZE_FOR_SIZE === 'false' ? 'defaults (CAPFLOW_OPTIMIZE_FOR_SIZE=false)' : '--optimize-for-size, which `capflow reconcile` sets itself at start (CAPFLOW_OPTIMIZE_FOR_SIZE=false to compare)'}; ` +
      `node flags: ${NODE_FLAGS.length > 0 ? NODE_FLAGS.join(' ') : 'none'} (BENCH_NODE_FLAGS).`,
  );
  console.log('');
  console.log('   pass                                              runs  wall ms (median)  pass ms (median, max)  decided          submitted  loaded  RSS MB  peak RSS MB');
  for (const r of rows) {
    console.log(
      `${r.proc}  ${r.what.padEnd(50)} ${String(r.n).padStart(4)}  ${ms(r.wallMs).padStart(16)}  ${`${ms(r.passMs)}, ${ms(r.maxPassMs)}`.padStart(21)}  ${r.decided.padEnd(15)}  ${r.submitted.padStart(9)}  ${r.loaded.padStart(6)}  ${mb(r.rss).padStart(6)}  ${mb(r.peak).padStart(11)}`,
    );
  }
  console.log('');
  const sorted = [...latencies].sort((a, b) => a - b);
  console.log(`webhook → Workflow object (${latencies.length} pushes): median ${ms(median(latencies))} ms, min ${ms(sorted[0] ?? NaN)} ms, max ${ms(sorted[sorted.length - 1] ?? NaN)} ms`);
  breakdowns.push({ what: `A: the webhook pushes' passes (median pass ${ms(median(hookPassMs))} ms)`, ms: medianSteps(hookSteps) });
  console.log('');
  console.log('where a pass\'s time went, median ms per step (the pass log line\'s `ms`; per-cluster steps summed over the clusters):');
  for (const b of breakdowns) console.log(`  ${b.what.padEnd(62)} ${Object.entries(b.ms).map(([k, v]) => `${k} ${ms(v)}`).join(', ')}`);
  console.log(`passes that ended between a push and its own pass (not measured): ${otherPasses.length === 0 ? 'none' : otherPasses.join('; ')}`);
} finally {
  stopChild?.();
  await remote.stop();
  await env.stop();
  for (const dir of cacheDirs) rmSync(dir, { recursive: true, force: true });
}
