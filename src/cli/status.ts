import { ExitCode } from '../core/errors.js';
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

Options:
  --namespace NS     the reconciler's namespace (default capflow-system, or CAPFLOW_NAMESPACE)
  --kubeconfig FILE  management cluster (default KUBECONFIG, ~/.kube/config, else in-cluster)
  --json             every record field plus gitHead, as a JSON array
  --wide             the first error in full, and the record's message
Exit codes: 0 printed (also when a named cluster has no record: it is said on stderr).`;

/** Errors longer than this are cut in the table unless --wide. */
const ERROR_WIDTH = 60;

export async function statusCommand(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse('status', argv, {
    namespace: { type: 'string' },
    kubeconfig: { type: 'string' },
    json: { type: 'boolean' },
    wide: { type: 'boolean' },
  });
  if (values.help) return io.out(statusHelp), ExitCode.ok;
  const namespace = str(values.namespace) ?? (io.env.CAPFLOW_NAMESPACE || 'capflow-system');
  const store = new ConfigMapRecordStore(loadKubeConfig(str(values.kubeconfig)), namespace);
  const [records, state] = await Promise.all([store.list(), store.readState()]);
  for (const name of positionals) if (!records.has(name)) io.err(`capflow status: no record of cluster "${name}" in ${namespace}`);
  const shown = [...records.values()].filter((r) => positionals.length === 0 || positionals.includes(r.cluster)).sort((a, b) => (a.cluster < b.cluster ? -1 : 1));

  if (values.json) {
    io.out(JSON.stringify(shown.map(({ resourceVersion: _rv, ...record }) => ({ ...record, gitHead: state.gitRevision })), null, 2));
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
