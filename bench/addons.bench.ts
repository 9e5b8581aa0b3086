/**
 * install-addons at size: ADDONS AddonCharts of OBJECTS objects each (ConfigMaps, Services,
 * ServiceAccounts, Roles and RoleBindings from one generated chart folder, each release in its own
 * namespace), installed by the real step (run in this process) into a real kube-apiserver (envtest;
 * nothing waits on pods: these kinds are ready once stored). Three runs: the first install, a no-op
 * rerun, and a prune (half of the addons removed from Git). For each: wall time, and the requests
 * capflow made as the API server's audit log records them (all, and writes: create, update, patch,
 * delete, server-side dry runs excluded). The no-op rerun's target is 0 writes.
 *
 *   npm run build && node --import tsx bench/addons.bench.ts [addons=20] [objects=50]
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { createLogger } from '../src/core/logger.js';
import { LocalSecretStore } from '../src/core/secrets.js';
import { runStep } from '../src/core/step-host.js';
import { executors } from '../executors/index.js';
import { startEnvtest } from '../test/support/envtest.js';
import { requireTool } from '../test/support/tools.js';
import { minimalAws } from '../test/fixtures/spec/support.js';

const addons = Number(process.argv[2] ?? 20);
const objects = Number(process.argv[3] ?? 50);
const KINDS = ['ConfigMap', 'Service', 'ServiceAccount', 'Role', 'RoleBinding'] as const;

/** One chart rendering `count` objects, cycling through KINDS. */
function chartFolder(root: string): void {
  const dir = path.join(root, 'charts', 'bulk');
  mkdirSync(path.join(dir, 'templates'), { recursive: true });
  writeFileSync(path.join(dir, 'Chart.yaml'), 'apiVersion: v2\nname: bulk\nversion: 0.1.0\n');
  writeFileSync(path.join(dir, 'values.yaml'), `count: ${objects}\nrevision: "1"\n`);
  const template = `{{- range $i := until (int .Values.count) }}
{{- $name := printf "%s-%d" $.Release.Name $i }}
{{- $kind := mod $i 5 }}
---
{{- if eq $kind 0 }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}
data:
  index: "{{ $i }}"
  revision: {{ $.Values.revision | quote }}
{{- else if eq $kind 1 }}
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
spec:
  selector:
    app: {{ $name }}
  ports:
  - port: 80
    targetPort: 8080
{{- else if eq $kind 2 }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $name }}
{{- else if eq $kind 3 }}
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $name }}
rules:
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
{{- else }}
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ printf "%s-%d" $.Release.Name (sub $i 1) }}
subjects:
- kind: ServiceAccount
  name: {{ printf "%s-%d" $.Release.Name (sub $i 2) }}
{{- end }}
{{- end }}
`;
  writeFileSync(path.join(dir, 'templates', 'objects.yaml'), template);
}

function addonsYaml(count: number): string {
  return Array.from({ length: count }, (_, i) => `apiVersion: capflow.io/v1alpha1
kind: AddonChart
metadata:
  name: bulk-${i}
spec:
  path: charts/bulk
  namespace: bulk-${i}
  timeout: 2m
`).join('---\n');
}

interface AuditEvent {
  verb: string;
  requestURI: string;
  userAgent?: string;
}

async function main(): Promise<void> {
  if (KINDS.length !== 5) throw new Error('the template cycles through five kinds');
  const work = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-addons-'));
  const auditLog = path.join(work, 'audit.log');
  writeFileSync(path.join(work, 'policy.yaml'), 'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n');
  const env = await startEnvtest({ apiserverArgs: [`--audit-policy-file=${path.join(work, 'policy.yaml')}`, `--audit-log-path=${auditLog}`, '--audit-log-format=json'] });
  process.env.CAPFLOW_HELM = requireTool('helm');
  try {
    const repo = path.join(work, 'repo');
    const folder = path.join(repo, 'clusters', 'bench');
    mkdirSync(folder, { recursive: true });
    for (const [f, text] of Object.entries(minimalAws())) writeFileSync(path.join(folder, f), text);
    chartFolder(repo);
    const secrets = new LocalSecretStore(path.join(work, 'secrets'));
    // the minimal cluster is called dev; its admin kubeconfig where kubeadm-init keeps it
    await secrets.put('dev-kubeconfig', { value: env.kubeconfig });
    const executor = executors.find((e) => e.id === 'install-addons')!;
    let mark = 0;

    const measure = async (label: string, count: number): Promise<string> => {
      writeFileSync(path.join(folder, 'addons.yaml'), addonsYaml(count));
      const t0 = performance.now();
      const res = await runStep(executor, { repoDir: repo, clusterPath: 'clusters/bench', revision: label, dryRun: false, delete: false, params: { concurrency: '4' } }, {
        secrets,
        log: createLogger({ stream: new PassThrough(), format: 'json', level: 'error' }),
        stdout: new PassThrough(),
        outputsDir: path.join(work, 'out', label),
      });
      const wall = performance.now() - t0;
      if (res.exitCode !== 0) throw new Error(`${label}: exit ${res.exitCode}: ${JSON.stringify(res.summary.error)}`);
      await new Promise((r) => setTimeout(r, 1500)); // the audit log's buffered writer catches up
      const lines = readFileSync(auditLog, 'utf8').split('\n').filter(Boolean);
      const events = lines.slice(mark).map((l) => JSON.parse(l) as AuditEvent).filter((e) => /node-fetch/.test(e.userAgent ?? ''));
      mark = lines.length;
      const writes = events.filter((e) => ['create', 'update', 'patch', 'delete'].includes(e.verb) && !/[?&]dryRun=All/.test(e.requestURI));
      const dryRuns = events.filter((e) => /[?&]dryRun=All/.test(e.requestURI)).length;
      const changes = readFileSync(path.join(work, 'out', label, 'changes'), 'utf8');
      return `| ${label} | ${(wall / 1000).toFixed(1)} s | ${events.length} | ${writes.length} | ${dryRuns} | ${changes} |`;
    };

    const rows = [
      await measure('first install', addons),
      await measure('no-op rerun', addons),
      await measure(`prune ${addons - Math.floor(addons / 2)} addons`, Math.floor(addons / 2)),
    ];
    console.log(`install-addons: ${addons} AddonCharts x ${objects} objects (${addons * objects} objects, each addon in its own namespace), concurrency 4, real kube-apiserver`);
    console.log('| run | wall | API requests | writes | dry runs | changes (output) |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    for (const r of rows) console.log(r);
  } finally {
    await env.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
