import { driftReportsOf, type DriftReport } from '../core/drift.js';
import { ExitCode } from '../core/errors.js';
import { KubernetesSecretStore, LocalSecretStore, defaultLocalSecretsDir, type SecretStore } from '../core/secrets.js';
import { statusSecretName } from '../core/status.js';
import { loadKubeConfig } from '../gitops/kube.js';
import { ConfigMapRecordStore } from '../gitops/records.js';
import type { ClusterRecord, RunRecord } from '../gitops/types.js';
import { parse, str } from './args.js';
import type { CliIo } from './context.js';

export const statusHelp = `Usage: capflow status [cluster ...] [options]

Prints what the reconciler recorded for each cluster (all, or those named):
the revision applied, the branch head in Git at its last pass (marked * when
the cluster's spec there differs from the applied one), the phase, the last
run, drift and validation errors. Reads the ConfigMaps capflow-cluster-* and
capflow-reconciler-state.

For each cluster named, it then lists what the last plan (cluster-plan) or
apply of each AWS step found: every difference with the spec field and its
file:line in Git, and per resource family the commit whose run last wrote it
(the resources' capflow.io/revision tags, read by the last plan). These come
from the cluster's status secret capflow-<cluster>-status.

Options:
  --namespace NS     the reconciler's namespace (default capflow-system, or CAPFLOW_NAMESPACE)
  --kubeconfig FILE  management cluster (default KUBECONFIG, ~/.kube/config, else in-cluster)
  --json             every record field plus gitHead, as a JSON array
  --wide             the first error in full, and the record's message
  --local            no reconciler: the drift of clusters run by the local runner
                     (the local secret store, CAPFLOW_SECRETS_DIR or ~/.capflow/secrets)
Exit codes: 0 printed (also when a named cluster has no record: it is said on stderr).`;

/** Errors longer than this are cut in the table unless --wide. */
const ERROR_WIDTH = 60;

export async function statusCommand(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse('status', argv, {
    namespace: { type: 'string' },
    kubeconfig: { type: 'string' },
    json: { type: 'boolean' },
    wide: { type: 'boolean' },
    local: { type: 'boolean' },
  });
  if (values.help) return io.out(statusHelp), ExitCode.ok;
  const namespace = str(values.namespace) ?? (io.env.CAPFLOW_NAMESPACE || 'capflow-system');
  if (values.local) {
    const secrets = new LocalSecretStore(io.env.CAPFLOW_SECRETS_DIR || defaultLocalSecretsDir());
    return printDrift(positionals, secrets, values.json === true, io);
  }
  const store = new ConfigMapRecordStore(loadKubeConfig(str(values.kubeconfig)), namespace);
  const [records, state] = await Promise.all([store.list(), store.readState()]);
  for (const name of positionals) if (!records.has(name)) io.err(`capflow status: no record of cluster "${name}" in ${namespace}`);
  const shown = [...records.values()].filter((r) => positionals.length === 0 || positionals.includes(r.cluster)).sort((a, b) => (a.cluster < b.cluster ? -1 : 1));

  const secrets = new KubernetesSecretStore(namespace, str(values.kubeconfig));
  if (values.json) {
    const reports = new Map<string, DriftReport[]>();
    for (const name of positionals) reports.set(name, driftReportsOf(await secrets.get(statusSecretName(name))));
    io.out(JSON.stringify(shown.map(({ resourceVersion: _rv, ...record }) => ({ ...record, gitHead: state.gitRevision, ...(reports.has(record.cluster) ? { steps: reports.get(record.cluster) } : {}) })), null, 2));
    return ExitCode.ok;
  }
  if (shown.length === 0) {
    io.err(`no cluster records in ${namespace}`);
    return ExitCode.ok;
  }
  const wide = values.wide === true;
  const now = Date.now();
  const header = ['CLUSTER', 'PHASE', 'APPLIED', 'GIT', 'LAST RUN', 'DRIFT', 'ERRORS', ...(wide ? ['MESSAGE'] : [])];
  const rows = shown.map((r) => [
    r.cluster,
    r.phase,
    shortSha(r.appliedRevision),
    `${shortSha(state.gitRevision)}${r.specHash !== r.appliedSpecHash ? '*' : ''}`,
    lastRun(r.run, now),
    r.drift === 'Drifted' && r.driftChanges !== undefined ? `Drifted (${r.driftChanges})` : r.drift,
    errorsCell(r, wide),
    ...(wide ? [r.message ?? ''] : []),
  ]);
  io.out(table([header, ...rows]));
  if (positionals.length > 0) await printDrift(positionals, secrets, false, io);
  return ExitCode.ok;
}

/** Per named cluster: each step's last plan or apply (its differences at file:line) and the provenance of its resources. */
async function printDrift(clusters: readonly string[], secrets: SecretStore, json: boolean, io: CliIo): Promise<number> {
  const all: Array<{ cluster: string; steps: DriftReport[] }> = [];
  for (const cluster of clusters) all.push({ cluster, steps: driftReportsOf(await secrets.get(statusSecretName(cluster))) });
  if (json) {
    io.out(JSON.stringify(all, null, 2));
    return ExitCode.ok;
  }
  for (const { cluster, steps } of all) {
    if (steps.length === 0) {
      io.out(`\n${cluster}: no plan or apply recorded yet (run cluster-plan)`);
      continue;
    }
    for (const r of steps) {
      const what = `${r.mode} of ${shortSha(r.revision)} at ${r.at}`;
      const count = r.changes.length + (r.omitted ?? 0);
      const verdict = r.mode === 'plan' ? (count === 0 ? 'in sync' : `${count} ${count === 1 ? 'difference' : 'differences'}`) : `in sync after ${count} ${count === 1 ? 'change' : 'changes'}`;
      io.out(`\n${cluster} ${r.step}: ${verdict} (${what})`);
      if (r.changes.length > 0) {
        io.out(
          table([
            ['ACTION', 'RESOURCE', 'NAME', 'ID', 'FIELD', 'SOURCE', 'DETAIL'],
            ...r.changes.map((e) => [e.action, e.resource, e.name, e.id ?? '-', e.field ?? '-', e.source ?? '-', e.detail ?? '']),
          ]),
        );
        if (r.omitted) io.out(`... and ${r.omitted} more`);
      }
      if (r.provenance && Object.keys(r.provenance).length > 0) {
        io.out('provenance (the commit whose run last wrote each family, from capflow.io/revision):');
        io.out(
          table([
            ['FAMILY', 'REVISIONS'],
            ...Object.entries(r.provenance)
              .sort(([a], [b]) => a.localeCompare(b))
              .map(([family, revs]) => [family, Object.entries(revs).sort(([, a], [, b]) => b - a).map(([rev, n]) => `${shortSha(rev)} (${n})`).join(', ')]),
          ]),
        );
      }
    }
  }
  return ExitCode.ok;
}

function shortSha(revision: string | undefined): string {
  return revision ? revision.slice(0, 7) : '-';
}

function lastRun(run: RunRecord | undefined, now: number): string {
  if (!run) return '-';
  const at = Date.parse(run.finishedAt ?? run.submittedAt);
  return `${run.workflow} ${run.phase}${run.failedStep ? ` at ${run.failedStep}` : ''} ${Number.isNaN(at) ? '' : age(now - at)}`.trimEnd();
}

/** 45s, 12m, 3h, 2d: kubectl's way. */
function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

function errorsCell(record: ClusterRecord, wide: boolean): string {
  const errors = record.errors ?? [];
  if (errors.length === 0) return '-';
  const first = errors[0]!.split('\n')[0]!;
  const shown = wide || first.length <= ERROR_WIDTH ? first : `${first.slice(0, ERROR_WIDTH - 1)}…`;
  return `${errors.length}: ${shown}`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}
