/**
 * The install-addons step (`capflow step install-addons`, the built CLI) against a real
 * kube-apiserver (envtest) with the real kube-controller-manager's deployment and replicaset
 * controllers and kwok playing the kubelet (pods are not run, kwok reports them Running). Writes are
 * counted from the API server's audit log: the create, update, patch and delete requests capflow's
 * client made (server-side dry runs excluded, they write nothing).
 *
 * One cluster folder (a ClusterResourceSet and AddonCharts from a chart folder of the repository) is
 * installed, applied again, changed, broken and cut down, in order.
 */
import { expect } from 'chai';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AppsV1Api, CoreV1Api, KubernetesObjectApi, PatchStrategy, type KubeConfig } from '@kubernetes/client-node';
import { ADDON_LABEL } from '../../src/addons/apply.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { readStepStatus } from '../../src/core/status.js';
import type { AddonsStatus } from '../../src/addons/install.js';
import { startControllers, type Controllers } from '../support/controllers.js';
import { startEnvtest, type Envtest } from '../support/envtest.js';
import { spawnCapflow, type CliResult } from '../support/cli.js';
import { REPO_ROOT, requireTool } from '../support/tools.js';
import { minimalAws } from '../fixtures/spec/support.js';
import { addonsYaml } from '../support/addons-fixture.js';
import type { AuditEvent } from '../support/crash-kube.js';

const ADMIN = 'capflow-testbed-admin';
const AUDIT_POLICY = 'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n';

/** The failed step's error message, from its JSON log line. */
function errorOf(res: CliResult): string {
  const line = res.stderr.split('\n').find((l) => l.includes('"message":"Step install-addons failed"'));
  return line ? (JSON.parse(line) as { error: string }).error : `no error line in: ${res.stderr}`;
}


describe('install-addons step: charts and ClusterResourceSets against a real kube-apiserver (pods run by kwok, a kubelet stand-in)', function () {
  this.timeout(180_000);
  let env: Envtest;
  let ctl: Controllers;
  let kc: KubeConfig;
  let work: string;
  let repo: string;
  let auditLog: string;
  let mark = 0;

  const folder = () => path.join(repo, 'clusters', 'dev');
  const setAddons = (text: string) => writeFileSync(path.join(folder(), 'addons.yaml'), text);
  const step = async (...extra: string[]): Promise<CliResult & { outputs: { changes: string; addons: string } }> => {
    const outputs = mkdtempSync(path.join(work, 'out-'));
    const res = await spawnCapflow(['step', 'install-addons', '--repo', repo, '--cluster-dir', 'clusters/dev', '--outputs', outputs, '-p', 'poll-interval=200ms', ...extra], {
      env: { CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: path.join(work, 'secrets'), CAPFLOW_HELM: requireTool('helm') },
    }).done;
    const read = (n: string) => {
      try {
        return readFileSync(path.join(outputs, n), 'utf8');
      } catch {
        return '';
      }
    };
    return { ...res, outputs: { changes: read('changes'), addons: read('addons') } };
  };
  /** capflow's write requests since the last call (dry runs are not writes). */
  const writesSinceMark = (): AuditEvent[] => {
    const lines = readFileSync(auditLog, 'utf8').split('\n').filter(Boolean);
    const events = lines.slice(mark).map((l) => JSON.parse(l) as AuditEvent);
    mark = lines.length;
    // kwok shares the admin identity: capflow's requests are told apart by client-node's user agent
    return events.filter((e) => e.user.username === ADMIN && /node-fetch/.test(e.userAgent ?? '') && ['create', 'update', 'patch', 'delete'].includes(e.verb) && !/[?&]dryRun=All/.test(e.requestURI));
  };
  const written = (events: AuditEvent[]) => events.map((e) => `${e.verb} ${e.objectRef?.resource}/${e.objectRef?.name}`).sort();
  const labelled = async (addon: string): Promise<string[]> => {
    const core = kc.makeApiClient(CoreV1Api);
    const apps = kc.makeApiClient(AppsV1Api);
    const sel = { labelSelector: `${ADDON_LABEL}=${addon}` };
    // deleted means deleted or being deleted (no namespace controller runs here to finish a Namespace's)
    const live = <T extends { metadata?: { deletionTimestamp?: Date } }>(items: T[]) => items.filter((o) => !o.metadata?.deletionTimestamp);
    return [
      ...live((await core.listConfigMapForAllNamespaces(sel)).items).map((o) => `ConfigMap/${o.metadata!.name}`),
      ...live((await apps.listDeploymentForAllNamespaces(sel)).items).map((o) => `Deployment/${o.metadata!.name}`),
      ...live((await core.listNamespace(sel)).items).map((o) => `Namespace/${o.metadata!.name}`),
    ].sort();
  };

  before(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'capflow-install-addons-'));
    auditLog = path.join(work, 'audit.log');
    writeFileSync(path.join(work, 'audit-policy.yaml'), AUDIT_POLICY);
    env = await startEnvtest({ kwok: true, apiserverArgs: [`--audit-policy-file=${path.join(work, 'audit-policy.yaml')}`, `--audit-log-path=${auditLog}`, '--audit-log-format=json'] });
    ctl = startControllers(env, { controllers: ['deployment', 'replicaset', 'nodelifecycle'] });
    kc = env.makeKubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNode({ body: { metadata: { name: 'kwok-0', labels: { 'kubernetes.io/hostname': 'kwok-0' }, annotations: { 'kwok.x-k8s.io/node': 'fake' } } } });
    repo = path.join(work, 'repo');
    // the test chart without its CRD: db and web are two releases of it, and a CRD has one owner
    cpSync(path.join(REPO_ROOT, 'test', 'fixtures', 'charts', 'tiny'), path.join(repo, 'charts', 'tiny'), { recursive: true, filter: (src) => !src.includes(`${path.sep}crds`) });
    mkdirSync(folder(), { recursive: true });
    for (const [file, text] of Object.entries(minimalAws())) writeFileSync(path.join(folder(), file), text);
    setAddons(addonsYaml());
    // the cluster's admin kubeconfig, where kubeadm-init keeps it
    await new LocalSecretStore(path.join(work, 'secrets')).put('dev-kubeconfig', { value: env.kubeconfig });
  });
  after(async () => {
    await ctl?.stop();
    await env?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('the plan before anything is installed: every object to create, nothing written', async () => {
    mark = readFileSync(auditLog, 'utf8').split('\n').filter(Boolean).length;
    const res = await step('--dry-run');
    expect(res.code, res.stderr).to.equal(0);
    expect(writesSinceMark()).to.deep.equal([]);
    expect(res.stderr).to.match(/create\s+addon db\s+Deployment apps\/db/).and.match(/create\s+addon web\s+ConfigMap apps\/web-settings/).and.match(/create\s+addon crs-base\s+ConfigMap kube-system\/base-settings/);
    expect(JSON.parse(res.outputs.addons)).to.have.members(['crs-base', 'db', 'web']);
  });

  it('installs the resource set, then db, then web (which depends on it), each ready before the next; its namespace made and labelled', async () => {
    const res = await step();
    expect(res.code, res.stderr).to.equal(0);
    const order = res.stderr.split('\n').filter((l) => /"message":"Addon \S+ applied/.test(l)).map((l) => /Addon (\S+) applied/.exec(l)![1]!);
    expect(order).to.deep.equal(['crs-base', 'db', 'web']);
    expect(await labelled('db')).to.deep.equal(['ConfigMap/db-settings', 'Deployment/db', 'Namespace/apps']);
    expect(await labelled('web')).to.deep.equal(['ConfigMap/web-settings', 'Deployment/web']);
    expect(await labelled('crs-base')).to.deep.equal(['ConfigMap/base-settings']);
    const web = await kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: 'web', namespace: 'apps' });
    expect(web.status?.availableReplicas, 'ready before the step ended').to.equal(2);
    expect(Number(res.outputs.changes)).to.equal(writesSinceMark().length);
    const status = await readStepStatus<AddonsStatus>(new LocalSecretStore(path.join(work, 'secrets')), 'dev', 'install-addons');
    expect(Object.keys(status!.addons).sort()).to.deep.equal(['crs-base', 'db', 'web']);
  });

  it('run again, writes nothing (audit log: no create, update, patch or delete) and says 0 changes', async () => {
    const res = await step();
    expect(res.code, res.stderr).to.equal(0);
    expect(written(writesSinceMark())).to.deep.equal([]);
    expect(res.outputs.changes).to.equal('0');
  });

  it('a values change rolls only what changed: the plan names it, the apply writes web\'s ConfigMap and Deployment only', async () => {
    setAddons(addonsYaml({ webValues: 'green' }));
    const plan = await step('--dry-run');
    expect(plan.code, plan.stderr).to.equal(0);
    expect(plan.stderr).to.match(/update\s+addon web\s+ConfigMap apps\/web-settings/).and.match(/update\s+addon web\s+Deployment apps\/web/).and.match(/no-change\s+addon db\s+Deployment apps\/db/);
    expect(plan.outputs.changes).to.equal('2');
    expect(writesSinceMark()).to.deep.equal([]);
    const res = await step();
    expect(res.code, res.stderr).to.equal(0);
    expect(written(writesSinceMark())).to.deep.equal(['patch configmaps/web-settings', 'patch deployments/web']);
    expect(res.outputs.changes).to.equal('2');
  });

  it('an invalid manifest is refused before anything is applied, naming the addon, the object and the ConfigMap\'s file:line', async () => {
    const bad = 'apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: broken\n      namespace: kube-system\n    spec:\n      replicas: many';
    setAddons(addonsYaml({ manifest: bad, webValues: 'red' }));
    const res = await step();
    expect(res.code, res.stderr).to.equal(2);
    expect(res.stderr).to.include('ADDON_OBJECT_INVALID');
    expect(errorOf(res)).to.match(/addons\.yaml:\d+: addon crs-base: Deployment kube-system\/broken is refused by the API server: .*replicas/);
    expect(errorOf(res)).to.match(/from ConfigMap\/base-manifests at \S*clusters\/dev\/addons\.yaml:\d+\)/);
    expect(written(writesSinceMark()), 'web\'s change was not applied either').to.deep.equal([]);
  });

  it('a chart that fails to render is refused before anything is applied, naming the AddonChart\'s file:line', async () => {
    setAddons(addonsYaml({ webValues: 'red' }).replace('  path: charts/tiny\n  namespace: apps\n  timeout: 60s\n  values:\n    settings:\n      role: db', '  path: charts/tiny\n  namespace: apps\n  timeout: 60s\n  valuesFiles: [missing.yaml]\n  values:\n    settings:\n      role: db'));
    const res = await step();
    expect(res.code, res.stderr).to.equal(2);
    expect(errorOf(res)).to.match(/addons\.yaml:\d+: AddonChart db: spec\.valuesFiles\[0\] "missing\.yaml" does not exist under the cluster folder/);
    expect(written(writesSinceMark())).to.deep.equal([]);
  });

  it('an addon removed from Git is pruned, exactly its objects; the others stay untouched', async () => {
    setAddons(addonsYaml({ web: false, webValues: 'green' }));
    const res = await step();
    expect(res.code, res.stderr).to.equal(0);
    expect(written(writesSinceMark())).to.deep.equal(['delete configmaps/web-settings', 'delete deployments/web']);
    expect(await labelled('web')).to.deep.equal([]);
    expect(await labelled('db')).to.deep.equal(['ConfigMap/db-settings', 'Deployment/db', 'Namespace/apps']);
    expect(JSON.parse(res.outputs.addons)).to.deep.include({ name: 'web', written: 0, pruned: 2 });
    const status = await readStepStatus<AddonsStatus>(new LocalSecretStore(path.join(work, 'secrets')), 'dev', 'install-addons');
    expect(Object.keys(status!.addons).sort()).to.deep.equal(['crs-base', 'db']);
  });

  it('a field another manager took is a conflict (exit 3) before any write; with force: true capflow takes it back', async () => {
    setAddons(addonsYaml({ web: false }));
    const objects = kc.makeApiClient(KubernetesObjectApi);
    await objects.patch({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'db-settings', namespace: 'apps' }, data: { role: 'hand-edited' } }, undefined, undefined, 'someone-else', true, PatchStrategy.ServerSideApply);
    writesSinceMark();
    const res = await step();
    expect(res.code, res.stderr).to.equal(3);
    expect(errorOf(res)).to.match(/addon db: ConfigMap apps\/db-settings: .*conflict.*someone-else/i);
    expect(written(writesSinceMark())).to.deep.equal([]);
    setAddons(addonsYaml({ web: false }).replace('  namespace: apps\n  timeout: 60s\n  values:\n    settings:\n      role: db', '  namespace: apps\n  timeout: 60s\n  force: true\n  values:\n    settings:\n      role: db'));
    const forced = await step();
    expect(forced.code, forced.stderr).to.equal(0);
    expect(written(writesSinceMark())).to.deep.equal(['patch configmaps/db-settings']);
    const cm = await kc.makeApiClient(CoreV1Api).readNamespacedConfigMap({ name: 'db-settings', namespace: 'apps' });
    expect(cm.data?.role).to.equal('db');
  });

  it('two addons rendering one object are refused before anything is applied, naming both', async () => {
    setAddons(`${addonsYaml({ web: false })}---\napiVersion: capflow.io/v1alpha1\nkind: AddonChart\nmetadata:\n  name: db-copy\nspec:\n  path: charts/tiny\n  releaseName: db\n  namespace: apps\n`);
    const res = await step();
    expect(res.code, res.stderr).to.equal(2);
    expect(errorOf(res)).to.match(/^ConfigMap apps\/db-settings is rendered by two addons: db and db-copy/);
    expect(written(writesSinceMark())).to.deep.equal([]);
  });

  it('killed mid-apply (SIGKILL once the audit log shows its third write), then the addon removed from Git: the rerun prunes what the killed run made, nothing leaks', async () => {
    // a chart of 40 ConfigMaps, so that the kill lands mid-apply
    mkdirSync(path.join(repo, 'charts', 'many', 'templates'), { recursive: true });
    writeFileSync(path.join(repo, 'charts', 'many', 'Chart.yaml'), 'apiVersion: v2\nname: many\nversion: 0.1.0\n');
    writeFileSync(path.join(repo, 'charts', 'many', 'templates', 'cms.yaml'), '{{- range $i := until 40 }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: many-{{ $i }}\ndata:\n  i: "{{ $i }}"\n{{- end }}\n');
    const extra = `---\napiVersion: capflow.io/v1alpha1\nkind: AddonChart\nmetadata:\n  name: extra\nspec:\n  path: charts/many\n  namespace: extra\n  timeout: 60s\n`;
    setAddons(addonsYaml({ web: false }) + extra);
    const outputs = mkdtempSync(path.join(work, 'out-'));
    const run = spawnCapflow(['step', 'install-addons', '--repo', repo, '--cluster-dir', 'clusters/dev', '--outputs', outputs], {
      env: { CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: path.join(work, 'secrets'), CAPFLOW_HELM: requireTool('helm') },
    });
    // the audit log is written as requests complete: kill once it shows two of the run's writes
    const seen: AuditEvent[] = [];
    const start = mark;
    while (seen.length < 3 && run.child.exitCode === null) {
      await new Promise((r) => setTimeout(r, 5));
      mark = start;
      seen.splice(0, seen.length, ...writesSinceMark());
    }
    run.child.kill('SIGKILL');
    const killed = await run.done;
    expect(killed.code, 'killed before it finished').to.equal(null);
    expect(await labelled('extra'), 'the killed run made part of the addon').to.not.deep.equal([]);
    expect((await labelled('extra')).length, 'the namespace and 40 ConfigMaps are not all there').to.be.below(41);
    writesSinceMark();

    setAddons(addonsYaml({ web: false }));
    const res = await step();
    expect(res.code, res.stderr).to.equal(0);
    expect(await labelled('extra')).to.deep.equal([]);
    expect(written(writesSinceMark()).every((w) => w.startsWith('delete ')), 'only deletes').to.equal(true);
    const status = await readStepStatus<AddonsStatus>(new LocalSecretStore(path.join(work, 'secrets')), 'dev', 'install-addons');
    expect(Object.keys(status!.addons).sort()).to.deep.equal(['crs-base', 'db']);
  });

  it('stage control-plane installs only the ControlPlane-stage addons', async () => {
    setAddons(`${addonsYaml({ web: false })}---\napiVersion: capflow.io/v1alpha1\nkind: AddonChart\nmetadata:\n  name: cni\nspec:\n  path: charts/tiny\n  namespace: cni\n  stage: ControlPlane\n  timeout: 60s\n`);
    const res = await step('-p', 'stage=control-plane');
    expect(res.code, res.stderr).to.equal(0);
    expect((JSON.parse(res.outputs.addons) as Array<{ name: string }>).map((a) => a.name)).to.deep.equal(['cni']);
    expect(await labelled('cni')).to.deep.equal(['ConfigMap/cni-settings', 'Deployment/cni', 'Namespace/cni']);
    expect(written(writesSinceMark()).every((w) => /\/cni(-settings)?$/.test(w)), 'nothing of the other stage').to.equal(true);
  });
});
