/**
 * The real cluster-apply, cluster-plan and cluster-delete of workflow-templates/, run by the local
 * runner with a fake `capflow` entry point (test/fixtures/runner/fake-capflow.mjs: it records each
 * step it is asked to run and writes the outputs the templates read): which tasks run, in which
 * order and with which parameters, and which are Skipped, for provider aws, eks and byoh.
 *
 * The rules it leans on (each as Argo has them, src/runner/README.md): a task whose `when` is false
 * is Skipped; a bare `depends: A` is A.Succeeded || A.Skipped || A.Daemoned, so the next task of a
 * skipped chain is reached and skipped by its own `when`; a DAG whose leaves are Skipped takes the
 * phase of their branches.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadTemplates, runWorkflow, type RunResult, type TemplateIndex } from '../../src/runner/index.js';
import { DEFAULT_CONFIG_MAPS } from '../../src/cli/run.js';
import { cleanTempDirs, FIXTURES, tempDir } from '../fixtures/runner/harness.js';

const FAKE = path.join(FIXTURES, 'fake-capflow.mjs');

interface Call {
  id: string;
  mode: 'apply' | 'plan' | 'delete';
  params: Record<string, string>;
}

let templates: TemplateIndex | undefined;
function real(): TemplateIndex {
  templates ??= loadTemplates(path.resolve(FIXTURES, '..', '..', '..', 'workflow-templates'));
  return templates;
}

/** Every output file a step template reads: the fake writes them all. */
function outputNames(index: TemplateIndex): string[] {
  const names = new Set<string>();
  for (const { resource } of index.values()) {
    for (const t of resource.spec.templates ?? []) {
      for (const o of t.outputs?.parameters ?? []) {
        const p = o.valueFrom?.path;
        if (p?.startsWith('/tmp/outputs/')) names.add(p.slice('/tmp/outputs/'.length));
      }
    }
  }
  return [...names].sort();
}

const BASE = { repo: '/nonexistent/repo', revision: '0123456789abcdef0123456789abcdef01234567', 'cluster-path': 'clusters/dev', 'cluster-name': 'dev' };

async function run(templateName: string, opts: { provider?: string; parameters?: Record<string, string>; fail?: string } = {}): Promise<{ result: RunResult; calls: Call[]; phases: Record<string, string> }> {
  const dir = tempDir();
  const log = path.join(dir, 'calls.jsonl');
  const index = real();
  const result = await runWorkflow({
    templates: index,
    templateName,
    parameters: { ...BASE, ...(opts.parameters ?? {}) },
    entryPoints: { capflow: [process.execPath, FAKE] },
    env: {
      PATH: process.env.PATH,
      FAKE_LOG: log,
      FAKE_OUTPUTS: JSON.stringify(outputNames(index)),
      FAKE_PROVIDER: opts.provider ?? 'aws',
      ...(opts.fail ? { FAKE_FAIL: opts.fail, FAKE_EXIT_CODE: '2' } : {}),
    },
    runDir: path.join(dir, 'runs'),
    lockDir: path.join(dir, 'locks'),
    // The AWS steps hold the account semaphore (capflow-aws-accounts), as `capflow run` gives it.
    configMaps: DEFAULT_CONFIG_MAPS,
    killGraceMs: 500,
  });
  let calls: Call[] = [];
  try {
    calls = readFileSync(log, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Call);
  } catch {
    // nothing ran
  }
  const root = result.nodes[0]!;
  const phases = Object.fromEntries(result.nodes.filter((n) => n.parentId === root.id).map((n) => [n.displayName, n.phase]));
  return { result, calls, phases };
}

/** Task names by phase, sorted: { Succeeded: [...], Skipped: [...] }. */
function byPhase(phases: Record<string, string>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [task, phase] of Object.entries(phases)) (out[phase] ??= []).push(task);
  for (const list of Object.values(out)) list.sort();
  return out;
}

const steps = (calls: Call[]): string[] => calls.map((c) => (c.mode === 'apply' ? c.id : `${c.id} --${c.mode === 'plan' ? 'dry-run' : 'delete'}`));
const before = (calls: Call[], a: string, b: string): boolean => {
  const s = steps(calls);
  expect(s, `${a} and ${b} both ran`).to.include.members([a, b]);
  return s.indexOf(a) < s.indexOf(b);
};

describe('runner: the cluster DAGs of workflow-templates/ for provider aws, eks and byoh (fake executors)', function () {
  this.timeout(60_000);
  after(cleanTempDirs);

  describe('cluster-apply', () => {
    it('provider aws, should run today’s chain and skip the EKS and BYOH steps', async () => {
      const { result, calls, phases } = await run('cluster-apply', { provider: 'aws' });
      expect(result.phase, result.message).to.equal('Succeeded');
      expect(byPhase(phases)).to.deep.equal({
        Succeeded: ['install-addons', 'install-cni', 'join-workers', 'kubeadm-init', 'launch-nodes', 'provision-vpc', 'validate-spec'],
        Skipped: ['eks-control-plane', 'eks-node-groups', 'install-addons-byoh', 'install-addons-eks', 'install-cni-byoh', 'join-workers-byoh', 'kubeadm-init-byoh', 'launch-nodes-eks', 'prepare-hosts'],
      });
      expect(steps(calls)).to.not.include.members(['eks-control-plane']);
      expect(steps(calls)).to.not.include.members(['prepare-hosts']);
      expect(steps(calls).slice(0, 3)).to.deep.equal(['validate-spec', 'provision-vpc', 'kubeadm-init']);
      expect(steps(calls).at(-2)).to.equal('join-workers');
      expect(steps(calls).at(-1)).to.equal('install-addons');
      expect(calls.filter((c) => c.id === 'install-addons').map((c) => c.params.stage).sort()).to.deep.equal(['control-plane', 'workers']);
    });

    it('provider eks, should run validate-spec -> provision-vpc -> eks-control-plane -> eks-node-groups and launch-nodes (its pools) -> install-addons (stage all) and skip the kubeadm steps', async () => {
      const { result, calls, phases } = await run('cluster-apply', { provider: 'eks' });
      expect(result.phase, result.message).to.equal('Succeeded');
      expect(byPhase(phases)).to.deep.equal({
        Succeeded: ['eks-control-plane', 'eks-node-groups', 'install-addons-eks', 'launch-nodes-eks', 'provision-vpc', 'validate-spec'],
        Skipped: ['install-addons', 'install-addons-byoh', 'install-cni', 'install-cni-byoh', 'join-workers', 'join-workers-byoh', 'kubeadm-init', 'kubeadm-init-byoh', 'launch-nodes', 'prepare-hosts'],
      });
      // a chain, node groups and Auto Scaling group pools side by side
      expect(steps(calls).slice(0, 3)).to.deep.equal(['validate-spec', 'provision-vpc', 'eks-control-plane']);
      expect(steps(calls).slice(3, 5).sort()).to.deep.equal(['eks-node-groups', 'launch-nodes']);
      expect(steps(calls).at(-1)).to.equal('install-addons');
      const call = (id: string): Call => calls.find((c) => c.id === id)!;
      expect(call('eks-control-plane').params).to.deep.equal({ 'wait-timeout': '30m' });
      expect(call('eks-node-groups').params).to.deep.equal({ 'wait-timeout': '30m' });
      expect(call('install-addons').params).to.deep.equal({ stage: 'all' });
      expect(result.nodes.find((n) => n.displayName === 'kubeadm-init')!.message).to.match(/evaluated false/);
    });

    for (const provider of ['aws', 'eks']) {
      it(`provider ${provider} with machines=false, should stop after the network`, async () => {
        const { result, calls, phases } = await run('cluster-apply', { provider, parameters: { machines: 'false' } });
        expect(result.phase, result.message).to.equal('Succeeded');
        expect(byPhase(phases).Succeeded).to.deep.equal(['provision-vpc', 'validate-spec']);
        expect(byPhase(phases).Skipped).to.have.length(14);
        expect(steps(calls)).to.deep.equal(['validate-spec', 'provision-vpc']);
      });
    }

    it('provider byoh, should run validate-spec -> prepare-hosts -> kubeadm-init -> install-addons (control-plane) -> join-workers -> install-addons (workers), with no network step', async () => {
      const { result, calls, phases } = await run('cluster-apply', { provider: 'byoh' });
      expect(result.phase, result.message).to.equal('Succeeded');
      expect(byPhase(phases)).to.deep.equal({
        Succeeded: ['install-addons-byoh', 'install-cni-byoh', 'join-workers-byoh', 'kubeadm-init-byoh', 'prepare-hosts', 'validate-spec'],
        Skipped: ['eks-control-plane', 'eks-node-groups', 'install-addons', 'install-addons-eks', 'install-cni', 'join-workers', 'kubeadm-init', 'launch-nodes', 'launch-nodes-eks', 'provision-vpc'],
      });
      // one chain: the hosts, the control plane, the CNI (no Node is Ready without it), the workers, the rest
      expect(steps(calls)).to.deep.equal(['validate-spec', 'prepare-hosts', 'kubeadm-init', 'install-addons', 'join-workers', 'install-addons']);
      expect(calls.filter((c) => c.id === 'install-addons').map((c) => c.params.stage)).to.deep.equal(['control-plane', 'workers']);
      // the SSH settings: the step templates' defaults
      const ssh = { 'connect-timeout': '20s', 'command-timeout': '15m', parallelism: '10' };
      const call = (id: string): Call => calls.find((c) => c.id === id)!;
      expect(call('prepare-hosts').params).to.deep.equal(ssh);
      expect(call('kubeadm-init').params).to.deep.equal({ 'api-timeout': '15m', ...ssh });
      expect(call('join-workers').params).to.deep.equal({ 'node-timeout': '15m', ...ssh });
      expect(result.nodes.find((n) => n.displayName === 'provision-vpc')!.message).to.match(/evaluated false/);
    });

    it('provider byoh with machines=false, should stop after validate-spec (no network step for hosts)', async () => {
      const { result, calls, phases } = await run('cluster-apply', { provider: 'byoh', parameters: { machines: 'false' } });
      expect(result.phase, result.message).to.equal('Succeeded');
      expect(byPhase(phases).Succeeded).to.deep.equal(['validate-spec']);
      expect(byPhase(phases).Skipped).to.have.length(15);
      expect(steps(calls)).to.deep.equal(['validate-spec']);
    });

    it('prepare-hosts failing (exit 2, not retried), should omit the rest of the BYOH chain and fail the run', async () => {
      const { result, calls, phases } = await run('cluster-apply', { provider: 'byoh', fail: 'prepare-hosts' });
      expect(result.phase).to.equal('Failed');
      expect(phases['prepare-hosts']).to.equal('Failed');
      for (const task of ['kubeadm-init-byoh', 'install-cni-byoh', 'join-workers-byoh', 'install-addons-byoh']) expect(phases[task], task).to.equal('Omitted');
      expect(steps(calls)).to.deep.equal(['validate-spec', 'prepare-hosts']);
    });

    it('eks-control-plane failing (exit 2, not retried), should omit the rest of the EKS chain and fail the run', async () => {
      const { result, calls, phases } = await run('cluster-apply', { provider: 'eks', fail: 'eks-control-plane' });
      expect(result.phase).to.equal('Failed');
      expect(phases['eks-control-plane']).to.equal('Failed');
      expect(phases['eks-node-groups']).to.equal('Omitted');
      expect(phases['launch-nodes-eks']).to.equal('Omitted');
      expect(phases['install-addons-eks']).to.equal('Omitted');
      expect(steps(calls).filter((s) => s === 'eks-control-plane')).to.have.length(1);
    });
  });

  describe('cluster-plan', () => {
    it('provider aws, should plan the network, the nodes and the addons', async () => {
      const { result, calls, phases } = await run('cluster-plan', { provider: 'aws' });
      expect(result.phase, result.message).to.equal('Succeeded');
      expect(byPhase(phases)).to.deep.equal({
        Succeeded: ['plan-addons', 'plan-nodes', 'plan-vpc', 'validate-spec'],
        Skipped: ['plan-eks-control-plane', 'plan-eks-node-groups', 'plan-prepare-hosts'],
      });
      expect(steps(calls)).to.deep.equal(['validate-spec', 'provision-vpc --dry-run', 'launch-nodes --dry-run', 'install-addons --dry-run']);
    });

    it('provider eks, should dry-run the EKS steps in order (launch-nodes beside them, for its pools), then the addons', async () => {
      const { result, calls, phases } = await run('cluster-plan', { provider: 'eks' });
      expect(result.phase, result.message).to.equal('Succeeded');
      expect(byPhase(phases)).to.deep.equal({
        Succeeded: ['plan-addons', 'plan-eks-control-plane', 'plan-eks-node-groups', 'plan-nodes', 'plan-vpc', 'validate-spec'],
        Skipped: ['plan-prepare-hosts'],
      });
      expect(before(calls, 'eks-control-plane --dry-run', 'eks-node-groups --dry-run')).to.equal(true);
      expect(steps(calls).sort()).to.deep.equal(['eks-control-plane --dry-run', 'eks-node-groups --dry-run', 'install-addons --dry-run', 'launch-nodes --dry-run', 'provision-vpc --dry-run', 'validate-spec']);
      expect(steps(calls).at(-1)).to.equal('install-addons --dry-run');
    });

    it('provider byoh, should dry-run prepare-hosts (no network, no AWS machines), then the addons', async () => {
      const { result, calls, phases } = await run('cluster-plan', { provider: 'byoh' });
      expect(result.phase, result.message).to.equal('Succeeded');
      expect(byPhase(phases)).to.deep.equal({
        Succeeded: ['plan-addons', 'plan-prepare-hosts', 'validate-spec'],
        Skipped: ['plan-eks-control-plane', 'plan-eks-node-groups', 'plan-nodes', 'plan-vpc'],
      });
      expect(steps(calls)).to.deep.equal(['validate-spec', 'prepare-hosts --dry-run', 'install-addons --dry-run']);
      // a plan only reads the hosts: a shorter command timeout than prepare-hosts' 15m
      expect(calls.find((c) => c.id === 'prepare-hosts')!.params).to.deep.equal({ 'connect-timeout': '20s', 'command-timeout': '2m', parallelism: '10' });
    });
  });

  describe('cluster-delete (no validate-spec: the provider comes from the provider parameter)', () => {
    const target = { 'cluster-name': 'dev', region: 'eu-west-1' };

    it('provider unknown (""), should run every chain: node groups before the control plane, hosts before the bootstrap secrets, the network last', async () => {
      const { result, calls, phases } = await run('cluster-delete', { parameters: { region: 'eu-west-1' } });
      expect(result.phase, result.message).to.equal('Succeeded');
      expect(byPhase(phases)).to.deep.equal({
        Succeeded: ['delete-bootstrap', 'delete-eks-control-plane', 'delete-eks-node-groups', 'delete-nodes', 'delete-prepare-hosts', 'delete-vpc'],
      });
      expect(before(calls, 'prepare-hosts --delete', 'kubeadm-init --delete')).to.equal(true);
      expect(steps(calls).filter((s) => s === 'kubeadm-init --delete')).to.have.length(1);
      expect(before(calls, 'eks-node-groups --delete', 'eks-control-plane --delete')).to.equal(true);
      expect(before(calls, 'eks-control-plane --delete', 'provision-vpc --delete')).to.equal(true);
      expect(before(calls, 'launch-nodes --delete', 'provision-vpc --delete')).to.equal(true);
      expect(before(calls, 'launch-nodes --delete', 'kubeadm-init --delete')).to.equal(true);
      expect(steps(calls).at(-1) === 'provision-vpc --delete' || steps(calls).at(-1) === 'kubeadm-init --delete').to.equal(true);
      for (const c of calls) if (c.id !== 'prepare-hosts') expect(c.params, c.id).to.include(target);
      // hosts have no region: prepare-hosts --delete finds them by cluster-name
      expect(calls.find((c) => c.id === 'prepare-hosts')!.params).to.deep.equal({ 'cluster-name': 'dev', 'connect-timeout': '20s', 'command-timeout': '15m', parallelism: '10' });
      expect(calls.find((c) => c.id === 'eks-control-plane')!.params).to.deep.equal({ ...target, 'wait-timeout': '30m' });
      expect(calls.find((c) => c.id === 'eks-node-groups')!.params).to.deep.equal({ ...target, 'wait-timeout': '30m' });
    });

    it('provider aws, should run today’s chain only', async () => {
      const { result, calls, phases } = await run('cluster-delete', { parameters: { region: 'eu-west-1', provider: 'aws' } });
      expect(result.phase, result.message).to.equal('Succeeded');
      expect(byPhase(phases)).to.deep.equal({
        Succeeded: ['delete-bootstrap', 'delete-nodes', 'delete-vpc'],
        Skipped: ['delete-eks-control-plane', 'delete-eks-node-groups', 'delete-prepare-hosts'],
      });
      expect(steps(calls)[0]).to.equal('launch-nodes --delete');
      expect(steps(calls).sort()).to.deep.equal(['kubeadm-init --delete', 'launch-nodes --delete', 'provision-vpc --delete']);
    });

    it('provider eks, should run eks-node-groups --delete and launch-nodes --delete (its pools) -> eks-control-plane --delete -> provision-vpc --delete', async () => {
      const { result, calls, phases } = await run('cluster-delete', { parameters: { region: 'eu-west-1', provider: 'eks' } });
      expect(result.phase, result.message).to.equal('Succeeded');
      expect(byPhase(phases)).to.deep.equal({
        Succeeded: ['delete-eks-control-plane', 'delete-eks-node-groups', 'delete-nodes', 'delete-vpc'],
        Skipped: ['delete-bootstrap', 'delete-prepare-hosts'],
      });
      expect(steps(calls).slice(0, 2).sort()).to.deep.equal(['eks-node-groups --delete', 'launch-nodes --delete']);
      expect(steps(calls).slice(2)).to.deep.equal(['eks-control-plane --delete', 'provision-vpc --delete']);
    });

    it('provider byoh, should run prepare-hosts --delete (drain, reset, release) -> kubeadm-init --delete, and no AWS step', async () => {
      const { result, calls, phases } = await run('cluster-delete', { parameters: { provider: 'byoh' } });
      expect(result.phase, result.message).to.equal('Succeeded');
      expect(byPhase(phases)).to.deep.equal({
        Succeeded: ['delete-bootstrap', 'delete-prepare-hosts'],
        Skipped: ['delete-eks-control-plane', 'delete-eks-node-groups', 'delete-nodes', 'delete-vpc'],
      });
      expect(steps(calls)).to.deep.equal(['prepare-hosts --delete', 'kubeadm-init --delete']);
      expect(calls[0]!.params).to.deep.equal({ 'cluster-name': 'dev', 'connect-timeout': '20s', 'command-timeout': '15m', parallelism: '10' });
      expect(calls[1]!.params).to.deep.equal({ 'cluster-name': 'dev', region: '' });
    });

    it('the hosts failing to be released, should keep the bootstrap secrets (the kubeconfig a rerun drains with)', async () => {
      const { result, calls, phases } = await run('cluster-delete', { parameters: { provider: 'byoh' }, fail: 'prepare-hosts:delete' });
      expect(result.phase).to.equal('Failed');
      expect(phases['delete-prepare-hosts']).to.equal('Failed');
      expect(phases['delete-bootstrap']).to.equal('Omitted');
      expect(steps(calls)).to.deep.equal(['prepare-hosts --delete']);
    });

    it('a node group deletion failing, should keep the control plane and the network (nothing deleted under them)', async () => {
      const { result, calls, phases } = await run('cluster-delete', { parameters: { provider: 'eks' }, fail: 'eks-node-groups:delete' });
      expect(result.phase).to.equal('Failed');
      expect(phases['delete-eks-control-plane']).to.equal('Omitted');
      expect(phases['delete-vpc']).to.equal('Omitted');
      expect(steps(calls)).to.not.include('eks-control-plane --delete');
      expect(steps(calls)).to.not.include('provision-vpc --delete');
    });

    it('a provider the parameter does not know, should be refused before anything runs', async () => {
      let err: unknown;
      try {
        await run('cluster-delete', { parameters: { provider: 'EKS' } });
      } catch (e) {
        err = e;
      }
      expect(String(err)).to.match(/provider/).and.match(/EKS/);
    });
  });
});
