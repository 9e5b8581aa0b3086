/**
 * The worker thread of spec-loads.ts: loads and validates cluster folders
 * sent by the reconciler, one at a time, and answers with the spec hash or
 * the problems as printable lines. Parsing and validating are CPU-bound; here
 * they cannot hold up the reconciler's event loop (probes, webhooks, the Lease).
 */
import path from 'node:path';
import { parentPort } from 'node:worker_threads';
import { describePause, formatProblem, specHashWithInputs, validateClusterSpec } from '../spec/index.js';
import { displayOf, type SpecLoadReply, type SpecLoadRequest } from './spec-loads.js';

const port = parentPort;
if (!port) throw new Error('spec-load-worker runs as a worker thread of the reconciler');

port.on('message', (req: SpecLoadRequest) => {
  void load(req).then((reply) => port.postMessage(reply));
});
// the modules are loaded: the pool counts a load's time limit from here, not from the thread's start
port.postMessage({ ready: true } satisfies SpecLoadReply);

async function load(req: SpecLoadRequest): Promise<SpecLoadReply> {
  try {
    const { model, problems, inputs: lookedIn = [] } = await validateClusterSpec(req.dir, { displayRoot: req.displayRoot });
    const warnings = problems.filter((p) => p.severity === 'warning').map(formatProblem);
    // What the load read outside the folder (the display root is the checkout's root): a reconciler
    // that wrote only the cluster's folder writes these and loads again, and follows them in Git.
    const charts = model?.addons.flatMap((a) => (a.spec.path === undefined ? [] : [path.relative(req.displayRoot, path.resolve(req.displayRoot, a.spec.path)).split(path.sep).join('/')])) ?? [];
    const inputs = [...new Set([...lookedIn, ...charts])];
    const read = inputs.length > 0 ? { inputs } : {};
    if (model) {
      const specHash = await specHashWithInputs(model, req.displayRoot);
      return { id: req.id, result: { specHash, warnings, ...(model.paused ? { paused: describePause(model.paused) } : {}), ...read } };
    }
    return { id: req.id, result: { errors: problems.filter((p) => p.severity === 'error').map(formatProblem), warnings, ...read } };
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    const code = (e as { code?: unknown }).code;
    const kind = (e as { kind?: unknown }).kind;
    if (kind !== 'transient') {
      // A folder the loader cannot judge (a bug in capflow, or input it throws on) is still recorded,
      // as Invalid with the reason, so it shows in `capflow status` instead of vanishing. The record
      // names the capflow version that hashed it, so an upgrade loads it again.
      const where = displayOf(req);
      const what = typeof code === 'string' ? `[${code}] ${e.message}` : `${e.name}: ${e.message}`;
      const bug = typeof code === 'string' && kind === 'invalid-input' ? '' : ' (a bug in capflow: please report it with this folder)';
      return { id: req.id, result: { errors: [`${where}: capflow could not load this cluster folder: ${what}${bug}`], warnings: [] } };
    }
    return {
      id: req.id,
      error: { name: e.name, message: e.message, ...(typeof code === 'string' ? { code } : {}), ...(typeof kind === 'string' ? { kind } : {}) },
    };
  }
}
