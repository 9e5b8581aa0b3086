/**
 * The reconciler's Prometheus metrics, on a registry of its own (with the
 * process defaults) so that nothing else in the process adds to /metrics and
 * two reconcilers in one test process do not collide.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ClusterPhase, ReconcilerMetrics, RunKind } from './types.js';
import { WEBHOOK_PROVIDERS } from './webhooks.js';

const PREFIX = 'capflow_reconciler_';

/** Every phase, so a phase that empties is reported as 0 rather than keeping its last count. */
const PHASES = Object.keys({
  Pending: true,
  Running: true,
  Succeeded: true,
  Failed: true,
  Invalid: true,
  Removed: true,
  Deleted: true,
  Paused: true,
} satisfies Record<ClusterPhase, true>) as ClusterPhase[];

const RUN_KINDS: RunKind[] = ['apply', 'delete', 'plan'];
const SUBMISSION_RESULTS = ['created', 'adopted', 'error'] as const;
const WEBHOOK_RESULTS = ['accepted', 'ignored', 'unauthorized', 'bad-request', 'replay'] as const;
const HANDOVER_RESULTS = ['sent', 'failed', 'received'] as const;

export function createMetrics(): ReconcilerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const passes = new Counter({ name: `${PREFIX}passes_total`, help: 'Reconciliation passes by result.', labelNames: ['result'], registers: [registry] });
  const passDuration = new Histogram({
    name: `${PREFIX}pass_duration_seconds`,
    help: 'Duration of a reconciliation pass.',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [registry],
  });
  const submissions = new Counter({
    name: `${PREFIX}submissions_total`,
    help: 'Workflow submissions by kind and result (adopted: it already existed, from before a restart).',
    labelNames: ['kind', 'result'],
    registers: [registry],
  });
  const commitToSubmission = new Histogram({
    name: `${PREFIX}commit_to_submission_seconds`,
    help: 'Seconds from a commit first seen to its Workflow created.',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    registers: [registry],
  });
  const webhooks = new Counter({ name: `${PREFIX}webhooks_total`, help: 'Webhook deliveries by provider and result.', labelNames: ['provider', 'result'], registers: [registry] });
  const handovers = new Counter({
    name: `${PREFIX}push_handovers_total`,
    help: 'Push webhooks handed from a replica not leading to the leader, by result (sent, failed: on the replica that received the webhook; received: on the leader).',
    labelNames: ['result'],
    registers: [registry],
  });
  const clusters = new Gauge({ name: `${PREFIX}clusters`, help: 'Clusters by phase.', labelNames: ['phase'], registers: [registry] });
  const drifted = new Gauge({ name: `${PREFIX}drifted_clusters`, help: 'Clusters whose last plan found differences.', registers: [registry] });
  const leader = new Gauge({ name: `${PREFIX}leader`, help: '1 while this replica holds the leader lease.', registers: [registry] });

  // Series exist from the start, so rate() and alerts see a 0 before the first event.
  for (const result of ['ok', 'error']) passes.inc({ result }, 0);
  for (const kind of RUN_KINDS) for (const result of SUBMISSION_RESULTS) submissions.inc({ kind, result }, 0);
  for (const provider of WEBHOOK_PROVIDERS) for (const result of WEBHOOK_RESULTS) webhooks.inc({ provider, result }, 0);
  for (const result of HANDOVER_RESULTS) handovers.inc({ result }, 0);
  for (const phase of PHASES) clusters.set({ phase }, 0);
  leader.set(0);

  return {
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
    passCompleted(result, seconds) {
      passes.inc({ result });
      passDuration.observe(seconds);
    },
    submission(kind, result) {
      submissions.inc({ kind, result });
    },
    commitToSubmission(seconds) {
      commitToSubmission.observe(seconds);
    },
    webhook(provider, result) {
      webhooks.inc({ provider, result });
    },
    pushHandover(result) {
      handovers.inc({ result });
    },
    setClusters(byPhase, driftedCount) {
      for (const phase of PHASES) clusters.set({ phase }, byPhase[phase] ?? 0);
      drifted.set(driftedCount);
    },
    setLeader(leading) {
      leader.set(leading ? 1 : 0);
    },
  };
}
