// charts/capflow: the real `helm` lints and renders it; every rendered object is created in a real
// kube-apiserver with Argo's full CRDs installed (strict field validation: the API server checks the
// Deployment, RBAC and the WorkflowTemplates against the real schemas); then the RBAC is checked as
// the API server's authorizer sees it (SubjectAccessReview, and rules reviews and real requests made
// as the ServiceAccounts through impersonation). No controller runs: no pod ever starts.

import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { join } from 'node:path';
import { AuthorizationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { parse, parseAllDocuments } from 'yaml';
import { schemaPath, startEnvtest, type Envtest } from '../support/envtest.js';
import { helmLint, helmTemplate, REPO_ROOT, run } from '../support/tools.js';
import { parseReconcilerConfig } from '../../src/gitops/config.js';
import { awsSteps, buildPolicy } from '../../src/aws/iam-policy.js';

const CHART = join(REPO_ROOT, 'charts', 'capflow');
const SOURCE_DIR = join(REPO_ROOT, 'workflow-templates');
const COPY_DIR = join(CHART, 'files', 'workflow-templates');
const NS = 'capflow-system';
const HOOK_NS = 'capflow-argocd';
const RECONCILER = 'capflow-reconciler';
const EXECUTOR = 'capflow-executor';

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  [key: string]: unknown;
}

interface Container {
  name?: string;
  image?: string;
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: Record<string, Record<string, unknown>> }>;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
  securityContext?: Record<string, unknown>;
  livenessProbe?: { httpGet?: { path: string } };
  readinessProbe?: { httpGet?: { path: string } };
  resources?: Record<string, unknown>;
}

async function render(values: Record<string, unknown>, namespace = NS): Promise<Obj[]> {
  const r = await helmTemplate(CHART, values, { releaseName: 'capflow', namespace });
  expect(r.ok, r.output).to.equal(true);
  return parseAllDocuments(r.output)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

const find = (objs: Obj[], kind: string, name: string): Obj => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  expect(o, `${kind}/${name} rendered`).to.not.equal(undefined);
  return o!;
};

const sourceFiles = (): string[] => readdirSync(SOURCE_DIR).filter((f) => f.endsWith('.yaml')).sort();

/** Every container of a WorkflowTemplate's templates (container, script, containerSet, init, sidecars) and templateDefaults. */
function containersOf(wt: Obj): Container[] {
  const templates = [...((wt.spec?.templates ?? []) as Array<Record<string, unknown>>), ...(wt.spec?.templateDefaults ? [wt.spec.templateDefaults as Record<string, unknown>] : [])];
  return templates.flatMap((t) => [
    ...(t.container ? [t.container as Container] : []),
    ...(t.script ? [t.script as Container] : []),
    ...((t.containerSet as { containers?: Container[] } | undefined)?.containers ?? []),
    ...((t.initContainers ?? []) as Container[]),
    ...((t.sidecars ?? []) as Container[]),
  ]);
}

// ------------------------------------------------------------------------------------------------
// the API server, spoken to directly (strict field validation, impersonation)

interface KubeResponse {
  status: number;
  body: Record<string, unknown>;
}

async function kubeRequest(
  kc: KubeConfig,
  method: string,
  path: string,
  body?: unknown,
  impersonate?: { user: string; groups: string[] },
): Promise<KubeResponse> {
  const server = new URL(kc.getCurrentCluster()!.server);
  const headers: Record<string, string | string[]> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (impersonate) {
    headers['impersonate-user'] = impersonate.user;
    headers['impersonate-group'] = impersonate.groups;
  }
  const opts: RequestOptions = { method, hostname: server.hostname, port: server.port, path, headers };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(opts, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** The collection path of every kind the chart renders; a new kind must be added here (on purpose). */
const COLLECTIONS: Record<string, string> = {
  'v1/ConfigMap': '/api/v1/namespaces/%s/configmaps',
  'v1/ServiceAccount': '/api/v1/namespaces/%s/serviceaccounts',
  'v1/Service': '/api/v1/namespaces/%s/services',
  'apps/v1/Deployment': '/apis/apps/v1/namespaces/%s/deployments',
  'policy/v1/PodDisruptionBudget': '/apis/policy/v1/namespaces/%s/poddisruptionbudgets',
  'rbac.authorization.k8s.io/v1/Role': '/apis/rbac.authorization.k8s.io/v1/namespaces/%s/roles',
  'rbac.authorization.k8s.io/v1/RoleBinding': '/apis/rbac.authorization.k8s.io/v1/namespaces/%s/rolebindings',
  'argoproj.io/v1alpha1/WorkflowTemplate': '/apis/argoproj.io/v1alpha1/namespaces/%s/workflowtemplates',
  'argoproj.io/v1alpha1/Workflow': '/apis/argoproj.io/v1alpha1/namespaces/%s/workflows',
};

const serviceAccount = (ns: string, name: string): { user: string; groups: string[] } => ({
  user: `system:serviceaccount:${ns}:${name}`,
  groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'],
});

interface Access {
  verb: string;
  group: string;
  resource: string;
  name?: string;
  namespace?: string;
}

const fmt = (a: Access): string => `${a.verb} ${a.group || 'core'}/${a.resource}${a.name ? `/${a.name}` : ''} in ${a.namespace ?? NS}`;

/** The resource rules a subject has in a namespace, flattened to "verb group/resource[/name]". */
async function rulesOf(kc: KubeConfig, subject: { user: string; groups: string[] }, namespace: string): Promise<Set<string>> {
  const res = await kubeRequest(
    kc,
    'POST',
    '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews',
    { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace } },
    subject,
  );
  expect(res.status, JSON.stringify(res.body)).to.equal(201);
  const status = res.body.status as { resourceRules: Array<{ verbs: string[]; apiGroups?: string[]; resources?: string[]; resourceNames?: string[] }> };
  const out = new Set<string>();
  for (const rule of status.resourceRules) {
    for (const verb of rule.verbs)
      for (const group of rule.apiGroups ?? [''])
        for (const resource of rule.resources ?? [])
          for (const name of rule.resourceNames?.length ? rule.resourceNames : [''])
            out.add(`${verb} ${group || 'core'}/${resource}${name ? `/${name}` : ''}`);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------

describe('charts/capflow: the Helm chart (real helm, real kube-apiserver with Argo CRDs)', function () {
  this.timeout(120_000);

  const image = { repository: 'registry.example.com/mirror/capflow', tag: '9.9.9-test' };
  const chartImage = `${image.repository}:${image.tag}`;
  const hookValues = {
    image,
    reconciler: { repo: 'https://git.example.com/org/clusters.git', webhooks: { existingSecret: 'capflow-webhooks' } },
    argocd: { syncHook: true, cluster: { name: 'dev' }, revision: '0123456789abcdef0123456789abcdef01234567' },
  };
  let defaults: Obj[];
  let hooked: Obj[];

  before(async () => {
    [defaults, hooked] = await Promise.all([render({}), render(hookValues, HOOK_NS)]);
  });

  describe('lint, sync and render', () => {
    it('passes `helm lint --strict`', async () => {
      const r = await helmLint(CHART, { strict: true });
      expect(r.ok, r.output).to.equal(true);
      expect(r.output).to.match(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    });

    it('holds a byte-identical copy of workflow-templates/ and package.json’s version as appVersion (scripts/sync-chart.mjs)', async () => {
      expect(readdirSync(COPY_DIR).sort()).to.deep.equal(sourceFiles());
      for (const f of sourceFiles()) {
        expect(readFileSync(join(COPY_DIR, f)).equals(readFileSync(join(SOURCE_DIR, f))), `${f}: run node scripts/sync-chart.mjs`).to.equal(true);
      }
      const chart = parse(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as Record<string, unknown>;
      const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
      expect(chart).to.include({ apiVersion: 'v2', name: 'capflow', version: '0.1.0', appVersion: pkg.version });
      const check = await run(process.execPath, [join(REPO_ROOT, 'scripts', 'sync-chart.mjs'), '--check']);
      expect(check.code, check.stderr).to.equal(0);
    });

    it('renders the reconciler, its Service, PDB, both ServiceAccounts, Roles and RoleBindings, and every WorkflowTemplate', () => {
      const names = defaults.map((o) => `${o.kind}/${o.metadata.name}`).sort();
      const templates = sourceFiles().map((f) => `WorkflowTemplate/${(parse(readFileSync(join(SOURCE_DIR, f), 'utf8')) as Obj).metadata.name}`);
      expect(names).to.deep.equal(
        [
          'ConfigMap/capflow-aws-accounts',
          `Deployment/${RECONCILER}`,
          `PodDisruptionBudget/${RECONCILER}`,
          `Role/${EXECUTOR}`,
          `Role/${RECONCILER}`,
          `RoleBinding/${EXECUTOR}`,
          `RoleBinding/${RECONCILER}`,
          `Service/${RECONCILER}`,
          `ServiceAccount/${EXECUTOR}`,
          `ServiceAccount/${RECONCILER}`,
          ...templates,
        ].sort(),
      );
      for (const o of defaults) expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).to.equal(NS);
      expect(defaults.some((o) => o.kind === 'Workflow'), 'no Workflow without argocd.syncHook').to.equal(false);
      expect(defaults.some((o) => o.kind.startsWith('Cluster')), 'nothing cluster-wide').to.equal(false);
    });

    it('runs the reconciler as 2 leader-electing, non-root replicas with a read-only root and the Git cache in an emptyDir', () => {
      const d = find(defaults, 'Deployment', RECONCILER);
      const spec = d.spec as {
        replicas: number;
        template: {
          spec: {
            serviceAccountName: string;
            terminationGracePeriodSeconds: number;
            securityContext: Record<string, unknown>;
            containers: Container[];
            volumes: Array<{ name: string; emptyDir?: Record<string, unknown> }>;
          };
        };
      };
      expect(spec.replicas).to.equal(2);
      const pod = spec.template.spec;
      expect(pod.serviceAccountName).to.equal(RECONCILER);
      expect(pod.terminationGracePeriodSeconds).to.be.a('number');
      expect(pod.securityContext).to.include({ runAsNonRoot: true, runAsUser: 65532 });
      const [c] = pod.containers;
      expect(c!.image).to.equal('ghcr.io/capflow/capflow:0.1.0');
      expect(c!.args).to.include.members([
        'reconcile',
        '--leader-elect',
        '--cache-dir=/var/cache/capflow',
        `--namespace=${NS}`,
        '--listen=0.0.0.0:8080',
        '--branch=main',
        '--clusters-dir=clusters',
        '--poll-interval=60s',
        '--drift-interval=1h',
        '--drift-policy=report',
      ]);
      expect(c!.args).to.not.include('--allow-delete');
      expect(c!.securityContext).to.include({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
      const cache = c!.volumeMounts!.find((m) => m.mountPath === '/var/cache/capflow');
      expect(pod.volumes.find((v) => v.name === cache?.name)?.emptyDir).to.not.equal(undefined);
      expect(c!.livenessProbe?.httpGet?.path).to.equal('/healthz');
      expect(c!.readinessProbe?.httpGet?.path).to.equal('/readyz');
      expect(c!.resources).to.have.keys('requests', 'limits');
      expect(c!.env!.find((e) => e.name === 'POD_NAME')?.valueFrom).to.deep.equal({ fieldRef: { fieldPath: 'metadata.name' } });
      expect(c!.env!.map((e) => e.name).filter((n) => n.startsWith('CAPFLOW_WEBHOOK_')), 'no webhook secret unless one is named').to.deep.equal([]);

      const svc = find(defaults, 'Service', RECONCILER);
      expect(svc.metadata.annotations).to.include({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080', 'prometheus.io/path': '/metrics' });
      expect((svc.spec as { ports: unknown[] }).ports).to.deep.equal([{ name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' }]);
    });

    it('passes arguments and environment that `capflow reconcile` itself accepts (its real flag parser)', () => {
      const c = (find(hooked, 'Deployment', RECONCILER).spec as { template: { spec: { containers: Container[] } } }).template.spec.containers[0]!;
      // Values from the downward API and Secrets are filled in as the kubelet would.
      const env = Object.fromEntries(c.env!.map((e) => [e.name, e.value ?? (e.name === 'POD_NAME' ? 'capflow-reconciler-0' : 'from-a-secret')]));
      const [command, ...args] = c.args!;
      expect(command).to.equal('reconcile');
      const config = parseReconcilerConfig(args, env);
      expect(config).to.include({ repoUrl: hookValues.reconciler.repo, namespace: HOOK_NS, identity: 'capflow-reconciler-0', leaderElection: true, port: 8080, cacheDir: '/var/cache/capflow' });
      expect(config.webhookSecrets).to.deep.equal({ github: 'from-a-secret', gitlab: 'from-a-secret', gitea: 'from-a-secret' });
    });

    it('takes the webhook secrets from the named Secret (optional keys) and the repository from values', () => {
      const d = find(hooked, 'Deployment', RECONCILER);
      const c = (d.spec as { template: { spec: { containers: Container[] } } }).template.spec.containers[0]!;
      expect(c.image).to.equal(chartImage);
      expect(c.env!.find((e) => e.name === 'CAPFLOW_REPO')?.value).to.equal(hookValues.reconciler.repo);
      for (const [name, key] of [
        ['CAPFLOW_WEBHOOK_GITHUB_SECRET', 'github-secret'],
        ['CAPFLOW_WEBHOOK_GITLAB_TOKEN', 'gitlab-token'],
        ['CAPFLOW_WEBHOOK_GITEA_SECRET', 'gitea-secret'],
      ] as const) {
        expect(c.env!.find((e) => e.name === name)?.valueFrom, name).to.deep.equal({ secretKeyRef: { name: 'capflow-webhooks', key, optional: true } });
      }
    });

    it('renders each WorkflowTemplate as workflow-templates/ has it, apart from namespace, labels, image and the executor ServiceAccount', () => {
      for (const f of sourceFiles()) {
        const source = parse(readFileSync(join(SOURCE_DIR, f), 'utf8')) as Obj;
        const rendered = structuredClone(find(hooked, 'WorkflowTemplate', source.metadata.name));
        // namespace: the release's
        expect(rendered.metadata.namespace, f).to.equal(HOOK_NS);
        delete rendered.metadata.namespace;
        // labels: the file's own, plus the chart's
        expect(rendered.metadata.labels, f).to.include(source.metadata.labels ?? {});
        expect(rendered.metadata.labels, f).to.include({ 'app.kubernetes.io/instance': 'capflow', 'app.kubernetes.io/managed-by': 'Helm' });
        rendered.metadata.labels = source.metadata.labels!;
        // images: the chart's
        const sourceImages = containersOf(source).map((c) => c.image);
        for (const c of containersOf(rendered)) {
          expect(c.image, f).to.equal(chartImage);
          c.image = sourceImages.shift();
        }
        // the submitted templates run their steps as the executor
        if (source.spec?.entrypoint) {
          expect(rendered.spec?.serviceAccountName, f).to.equal(EXECUTOR);
          delete rendered.spec!.serviceAccountName;
        } else {
          expect(rendered.spec?.serviceAccountName, f).to.equal(undefined);
        }
        expect(rendered, f).to.deep.equal(source);
      }
      // Argo's own expressions reach the cluster untouched by Helm
      const apply = find(defaults, 'WorkflowTemplate', 'cluster-apply').spec as { synchronization: { mutexes: Array<{ name: string }> } };
      expect(apply.synchronization.mutexes[0]!.name).to.equal('capflow-cluster-{{workflow.parameters.cluster-name}}');
    });

    it('with executor.iamPolicies.configMap publishes each step\'s IAM policy (files/iam-policies/, as `capflow iam-policy` builds them for any cluster) in the ConfigMap capflow-iam-policies', async () => {
      expect(defaults.some((o) => o.kind === 'ConfigMap' && o.metadata.name === 'capflow-iam-policies'), 'off by default').to.equal(false);
      const objs = await render({ executor: { iamPolicies: { configMap: true } } });
      const cm = find(objs, 'ConfigMap', 'capflow-iam-policies') as Obj & { data: Record<string, string> };
      expect(cm.metadata.namespace).to.equal(NS);
      expect(Object.keys(cm.data).sort()).to.deep.equal([...awsSteps().map((s) => `${s}.json`), 'all-steps.json'].sort());
      for (const step of awsSteps()) expect(JSON.parse(cm.data[`${step}.json`]!), step).to.deep.equal(buildPolicy([step]));
      expect(JSON.parse(cm.data['all-steps.json']!)).to.deep.equal(buildPolicy(awsSteps()));
      expect(awsSteps()).to.include.members(['provision-vpc', 'launch-nodes', 'kubeadm-init', 'join-workers', 'eks-control-plane', 'eks-node-groups']);
    });

    it('with reconciler.capiLine set, every step container judges specs by that line too (CAPFLOW_CAPI_LINE), as the reconciler does', async () => {
      const pinned = await render({ reconciler: { capiLine: 'v1.11' } });
      const templates = pinned.filter((o) => o.kind === 'WorkflowTemplate');
      expect(templates.length).to.be.greaterThan(3);
      for (const t of templates) {
        for (const c of containersOf(t)) expect(c.env, t.metadata.name).to.deep.include({ name: 'CAPFLOW_CAPI_LINE', value: 'v1.11' });
      }
      // by default only where the Git credentials are mounted (templateDefaults)
      for (const t of defaults.filter((o) => o.kind === 'WorkflowTemplate'))
        for (const c of containersOf(t))
          expect((c.env ?? []).filter((e) => e.name !== 'CAPFLOW_GIT_CREDENTIALS_DIR' && e.name !== 'CAPFLOW_AWS_ACCOUNT_SLOTS'), t.metadata.name).to.deep.equal([]);
    });

    it('executor.extraEnv reaches every step (templateDefaults of the submitted templates); the Git credentials Secret is the one named', async () => {
      const extraEnv = [
        { name: 'AWS_REGION', value: 'eu-west-1' },
        { name: 'AWS_ACCESS_KEY_ID', valueFrom: { secretKeyRef: { name: 'aws', key: 'id' } } },
      ];
      const objs = await render({ executor: { extraEnv, gitCredentials: { secretName: 'org-git-token' } } });
      const submitted = objs.filter((o) => o.kind === 'WorkflowTemplate' && o.spec?.entrypoint);
      expect(submitted.map((o) => o.metadata.name).sort()).to.deep.equal(['cluster-apply', 'cluster-delete', 'cluster-plan']);
      for (const wt of submitted) {
        const defaultsOf = wt.spec!.templateDefaults as { container: Container };
        expect(defaultsOf.container.env, wt.metadata.name).to.deep.equal([{ name: 'CAPFLOW_GIT_CREDENTIALS_DIR', value: '/var/run/capflow/git' }, ...extraEnv]);
        expect(defaultsOf.container.securityContext, wt.metadata.name).to.include({ readOnlyRootFilesystem: true });
        const volumes = wt.spec!.volumes as Array<{ name: string; secret?: { secretName: string; optional: boolean } }>;
        expect(volumes.find((v) => v.name === 'git-credentials')?.secret, wt.metadata.name).to.include({ secretName: 'org-git-token', optional: true });
      }
    });

    it('with argocd.syncHook renders a Sync-hook Workflow running cluster-apply for the configured cluster', async () => {
      const wf = find(hooked, 'Workflow', 'capflow-sync-dev');
      expect(wf.metadata.annotations).to.include({ 'argocd.argoproj.io/hook': 'Sync', 'argocd.argoproj.io/hook-delete-policy': 'BeforeHookCreation' });
      expect(wf.spec).to.deep.equal({
        workflowTemplateRef: { name: 'cluster-apply' },
        serviceAccountName: EXECUTOR,
        arguments: {
          parameters: [
            { name: 'repo', value: hookValues.reconciler.repo },
            { name: 'revision', value: hookValues.argocd.revision },
            { name: 'cluster-path', value: 'clusters/dev' },
            { name: 'cluster-name', value: 'dev' },
          ],
        },
      });
      const noCluster = await helmTemplate(CHART, { argocd: { syncHook: true } });
      expect(noCluster.ok).to.equal(false);
      expect(noCluster.output).to.contain('argocd.cluster.name is required');
    });

    it('ships the AWS account semaphores (ConfigMap capflow-aws-accounts, limit 4 for "default") the AWS steps hold and read their share from', async () => {
      const cm = find(defaults, 'ConfigMap', 'capflow-aws-accounts');
      expect(cm.data).to.deep.equal({ default: '4' });
      const more = await render({ awsAccounts: { limits: { default: 2, 'prod-123456789012': 8 } } });
      expect(find(more, 'ConfigMap', 'capflow-aws-accounts').data).to.deep.equal({ default: '2', 'prod-123456789012': '8' });
      const bad = await helmTemplate(CHART, { awsAccounts: { limits: { default: 0 } } });
      expect(bad.ok).to.equal(false);
      expect(bad.output).to.contain('awsAccounts.limits.default must be a whole number >= 1');
      // Every AWS step template: the semaphore and the env read the same key of that ConfigMap.
      for (const name of ['provision-vpc', 'launch-nodes', 'eks-control-plane', 'eks-node-groups']) {
        const wt = find(defaults, 'WorkflowTemplate', name);
        for (const t of wt.spec!.templates as Array<{ name: string; synchronization?: unknown; container?: Container }>) {
          const ref = { name: 'capflow-aws-accounts', key: '{{inputs.parameters.aws-account}}' };
          expect(t.synchronization, t.name).to.deep.equal({ semaphores: [{ configMapKeyRef: ref }] });
          expect(t.container!.env, t.name).to.deep.include({ name: 'CAPFLOW_AWS_ACCOUNT_SLOTS', valueFrom: { configMapKeyRef: ref } });
        }
      }
    });

    it('refuses two replicas without leader election, and an unknown drift policy', async () => {
      const two = await helmTemplate(CHART, { reconciler: { leaderElection: { enabled: false } } });
      expect(two.ok).to.equal(false);
      expect(two.output).to.contain('needs reconciler.leaderElection.enabled');
      const one = await helmTemplate(CHART, { reconciler: { replicas: 1, leaderElection: { enabled: false } } });
      expect(one.ok, one.output).to.equal(true);
      const policy = await helmTemplate(CHART, { reconciler: { driftPolicy: 'fix' } });
      expect(policy.ok).to.equal(false);
      expect(policy.output).to.contain('driftPolicy must be report or enforce');
    });
  });

  describe('in a real kube-apiserver with the Argo CRDs', () => {
    let env: Envtest;
    let kc: KubeConfig;

    before(async function () {
      this.timeout(120_000);
      env = await startEnvtest({ crds: [schemaPath('argo', 'argoproj.io_workflows.yaml'), schemaPath('argo', 'argoproj.io_workflowtemplates.yaml')] });
      kc = env.makeKubeConfig();
      const core = kc.makeApiClient(CoreV1Api);
      for (const name of [NS, HOOK_NS]) await core.createNamespace({ body: { metadata: { name } } });
    });
    after(async () => env?.stop());

    it('creates every rendered object (defaults, and with the Argo CD hook) under strict field validation', async () => {
      for (const [ns, objs] of [[NS, defaults], [HOOK_NS, hooked]] as const) {
        for (const o of objs) {
          const collection = COLLECTIONS[`${o.apiVersion}/${o.kind}`];
          expect(collection, `a collection for ${o.apiVersion} ${o.kind}`).to.be.a('string');
          const res = await kubeRequest(kc, 'POST', `${collection!.replace('%s', ns)}?fieldValidation=Strict`, o);
          expect(res.status, `${o.kind}/${o.metadata.name}: ${JSON.stringify(res.body)}`).to.equal(201);
          expect(res.body.metadata, `${o.kind}/${o.metadata.name}`).to.include({ namespace: ns, name: o.metadata.name });
        }
      }
      // the API server kept every field of the WorkflowTemplates (nothing pruned by the CRD schema)
      const stored = await kubeRequest(kc, 'GET', `/apis/argoproj.io/v1alpha1/namespaces/${NS}/workflowtemplates/cluster-apply`);
      expect(stored.body.spec).to.deep.equal(find(defaults, 'WorkflowTemplate', 'cluster-apply').spec);
    });

    const reconcilerAllowed: Access[] = [
      ...['get', 'list', 'watch', 'create', 'update', 'patch'].map((verb) => ({ verb, group: '', resource: 'configmaps' })),
      { verb: 'create', group: 'coordination.k8s.io', resource: 'leases' },
      { verb: 'get', group: 'coordination.k8s.io', resource: 'leases', name: RECONCILER },
      { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', name: RECONCILER },
      ...['get', 'list', 'watch', 'create', 'patch'].map((verb) => ({ verb, group: 'argoproj.io', resource: 'workflows' })),
      // pause markers: created and deleted by name, never read
      ...['create', 'delete'].map((verb) => ({ verb, group: '', resource: 'secrets' })),
      { verb: 'create', group: '', resource: 'events' },
      { verb: 'create', group: 'events.k8s.io', resource: 'events' },
    ];
    const reconcilerDenied: Access[] = [
      ...['get', 'list', 'watch', 'update', 'patch'].map((verb) => ({ verb, group: '', resource: 'secrets' })),
      { verb: 'delete', group: '', resource: 'configmaps' },
      { verb: 'get', group: 'coordination.k8s.io', resource: 'leases', name: 'someone-elses-lease' },
      { verb: 'delete', group: 'coordination.k8s.io', resource: 'leases', name: RECONCILER },
      { verb: 'delete', group: 'argoproj.io', resource: 'workflows' },
      { verb: 'update', group: 'argoproj.io', resource: 'workflows' },
      { verb: 'create', group: 'argoproj.io', resource: 'workflowtemplates' },
      { verb: 'get', group: '', resource: 'configmaps', namespace: HOOK_NS },
      { verb: 'create', group: 'argoproj.io', resource: 'workflows', namespace: 'default' },
      { verb: 'list', group: '', resource: 'configmaps', namespace: '' },
    ];
    const executorAllowed: Access[] = ['get', 'list', 'create', 'update', 'delete'].map((verb) => ({ verb, group: '', resource: 'secrets' }));
    const executorDenied: Access[] = [
      { verb: 'get', group: '', resource: 'secrets', namespace: 'default' },
      { verb: 'list', group: '', resource: 'secrets', namespace: '' },
      { verb: 'get', group: '', resource: 'configmaps' },
      { verb: 'create', group: 'argoproj.io', resource: 'workflows' },
      { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', name: RECONCILER },
    ];

    async function allowed(sa: string, a: Access): Promise<boolean> {
      const subject = serviceAccount(NS, sa);
      const review = await kc.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
        body: {
          spec: {
            user: subject.user,
            groups: subject.groups,
            resourceAttributes: { namespace: a.namespace ?? NS, verb: a.verb, group: a.group, resource: a.resource, ...(a.name ? { name: a.name } : {}) },
          },
        },
      });
      return review.status?.allowed === true;
    }

    it('the reconciler’s ServiceAccount may do what the reconciler needs in its namespace (SubjectAccessReview), and reads no Secrets (it only creates and deletes pause markers)', async () => {
      for (const a of reconcilerAllowed) expect(await allowed(RECONCILER, a), fmt(a)).to.equal(true);
      for (const a of reconcilerDenied) expect(await allowed(RECONCILER, a), fmt(a)).to.equal(false);
    });

    it('the executor’s ServiceAccount may keep Secrets in the namespace, and nothing of the reconciler’s nor anything elsewhere', async () => {
      for (const a of executorAllowed) expect(await allowed(EXECUTOR, a), fmt(a)).to.equal(true);
      for (const a of executorDenied) expect(await allowed(EXECUTOR, a), fmt(a)).to.equal(false);
    });

    it('grants exactly those rules: the rules review of each ServiceAccount, less what any ServiceAccount has', async () => {
      const baseline = await rulesOf(kc, serviceAccount(NS, 'nobody'), NS);
      const granted = async (sa: string): Promise<string[]> => [...(await rulesOf(kc, serviceAccount(NS, sa), NS))].filter((r) => !baseline.has(r)).sort();
      expect(await granted(RECONCILER)).to.deep.equal(
        [
          ...['get', 'list', 'watch', 'create', 'update', 'patch'].map((v) => `${v} core/configmaps`),
          'create coordination.k8s.io/leases',
          `get coordination.k8s.io/leases/${RECONCILER}`,
          `update coordination.k8s.io/leases/${RECONCILER}`,
          ...['get', 'list', 'watch', 'create', 'patch'].map((v) => `${v} argoproj.io/workflows`),
          'create core/secrets',
          'delete core/secrets',
          'create core/events',
          'create events.k8s.io/events',
        ].sort(),
      );
      expect(await granted(EXECUTOR)).to.deep.equal(
        [...['get', 'list', 'create', 'update', 'delete'].map((v) => `${v} core/secrets`), 'create argoproj.io/workflowtaskresults', 'patch argoproj.io/workflowtaskresults'].sort(),
      );
    });

    it('as the reconciler (impersonated): writes its record, takes its Lease, submits a Workflow; reading a Secret is forbidden', async () => {
      const as = serviceAccount(NS, RECONCILER);
      const cm = await kubeRequest(kc, 'POST', `/api/v1/namespaces/${NS}/configmaps`, { metadata: { name: 'capflow-cluster-dev' }, data: { phase: 'Pending' } }, as);
      expect(cm.status, JSON.stringify(cm.body)).to.equal(201);
      const lease = await kubeRequest(
        kc,
        'POST',
        `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`,
        { metadata: { name: RECONCILER }, spec: { holderIdentity: 'capflow-reconciler-abc', leaseDurationSeconds: 15 } },
        as,
      );
      expect(lease.status, JSON.stringify(lease.body)).to.equal(201);
      const wf = await kubeRequest(
        kc,
        'POST',
        `/apis/argoproj.io/v1alpha1/namespaces/${NS}/workflows?fieldValidation=Strict`,
        {
          apiVersion: 'argoproj.io/v1alpha1',
          kind: 'Workflow',
          metadata: { name: 'cluster-apply-dev-1' },
          spec: { workflowTemplateRef: { name: 'cluster-apply' }, arguments: { parameters: [{ name: 'cluster-name', value: 'dev' }] } },
        },
        as,
      );
      expect(wf.status, JSON.stringify(wf.body)).to.equal(201);
      const secret = await kubeRequest(kc, 'GET', `/api/v1/namespaces/${NS}/secrets`, undefined, as);
      expect(secret.status).to.equal(403);
    });
  });
});
