import { expect } from 'chai';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { argoLintOffline, REPO_ROOT } from '../support/tools.js';
import { evaluateWhen, loadTemplates, type DagTask, type Template, type TemplateIndex } from '../../src/runner/index.js';
import type { Executor } from '../../src/core/executor.js';

const dir = path.join(REPO_ROOT, 'workflow-templates');
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).map((f) => path.join(dir, f));

const DAGS = ['cluster-apply', 'cluster-delete', 'cluster-plan'];
/** The steps every DAG runs, by WorkflowTemplate name: each is `capflow step <the same id>`. */
const STEPS = ['eks-control-plane', 'eks-node-groups', 'install-addons', 'join-workers', 'kubeadm-init', 'launch-nodes', 'prepare-hosts', 'provision-vpc', 'validate-spec'];

// The exact `when` of each conditional task. Argo evaluates them with govaluate after substitution,
// the local runner with src/runner/expr.ts: both read 'quoted' operands as strings and true/false
// as booleans, so a provider value is always quoted (an unquoted value with a '-' would be
// arithmetic to govaluate), machines compares to the boolean true as it always has.
const APPLY_AWS = "'{{tasks.validate-spec.outputs.parameters.provider}}' == 'aws' && {{workflow.parameters.machines}} == true";
const APPLY_EKS = "'{{tasks.validate-spec.outputs.parameters.provider}}' == 'eks' && {{workflow.parameters.machines}} == true";
const APPLY_BYOH = "'{{tasks.validate-spec.outputs.parameters.provider}}' == 'byoh' && {{workflow.parameters.machines}} == true";
/** provision-vpc and plan-vpc, plan-nodes: aws and eks (byoh hosts bring their own network). */
const NOT_BYOH = "'{{tasks.validate-spec.outputs.parameters.provider}}' != 'byoh'";
const PLAN_AWS = "'{{tasks.validate-spec.outputs.parameters.provider}}' == 'aws'";
const PLAN_EKS = "'{{tasks.validate-spec.outputs.parameters.provider}}' == 'eks'";
const PLAN_BYOH = "'{{tasks.validate-spec.outputs.parameters.provider}}' == 'byoh'";
/** delete-bootstrap: aws and byoh (kubeadm-init's delete); "" is unknown and runs every chain. */
const DELETE_KUBEADM = "'{{workflow.parameters.provider}}' != 'eks'";
/** delete-nodes and delete-vpc: aws and eks. */
const DELETE_AWS_EKS = "'{{workflow.parameters.provider}}' != 'byoh'";
const DELETE_EKS = "'{{workflow.parameters.provider}}' == '' || '{{workflow.parameters.provider}}' == 'eks'";
const DELETE_BYOH = "'{{workflow.parameters.provider}}' == '' || '{{workflow.parameters.provider}}' == 'byoh'";

interface Shape {
  depends?: string;
  when?: string;
  ref: string;
}
/** Each DAG task: its depends, when and `<WorkflowTemplate>/<template>`. */
const SHAPES: Record<string, Record<string, Shape>> = {
  'cluster-apply': {
    'validate-spec': { ref: 'validate-spec/validate-spec' },
    'provision-vpc': { depends: 'validate-spec', when: NOT_BYOH, ref: 'provision-vpc/provision-vpc' },
    'kubeadm-init': { depends: 'provision-vpc', when: APPLY_AWS, ref: 'kubeadm-init/kubeadm-init' },
    'launch-nodes': { depends: 'kubeadm-init', when: APPLY_AWS, ref: 'launch-nodes/launch-nodes' },
    'install-cni': { depends: 'kubeadm-init', when: APPLY_AWS, ref: 'install-addons/install-addons' },
    'join-workers': { depends: 'launch-nodes && install-cni', when: APPLY_AWS, ref: 'join-workers/join-workers' },
    'install-addons': { depends: 'join-workers', when: APPLY_AWS, ref: 'install-addons/install-addons' },
    'eks-control-plane': { depends: 'provision-vpc', when: APPLY_EKS, ref: 'eks-control-plane/eks-control-plane' },
    'eks-node-groups': { depends: 'eks-control-plane', when: APPLY_EKS, ref: 'eks-node-groups/eks-node-groups' },
    'launch-nodes-eks': { depends: 'eks-control-plane', when: APPLY_EKS, ref: 'launch-nodes/launch-nodes' },
    'install-addons-eks': { depends: 'eks-node-groups && launch-nodes-eks', when: APPLY_EKS, ref: 'install-addons/install-addons' },
    'prepare-hosts': { depends: 'validate-spec', when: APPLY_BYOH, ref: 'prepare-hosts/prepare-hosts' },
    'kubeadm-init-byoh': { depends: 'prepare-hosts', when: APPLY_BYOH, ref: 'kubeadm-init/kubeadm-init' },
    'install-cni-byoh': { depends: 'kubeadm-init-byoh', when: APPLY_BYOH, ref: 'install-addons/install-addons' },
    'join-workers-byoh': { depends: 'install-cni-byoh', when: APPLY_BYOH, ref: 'join-workers/join-workers' },
    'install-addons-byoh': { depends: 'join-workers-byoh', when: APPLY_BYOH, ref: 'install-addons/install-addons' },
  },
  'cluster-plan': {
    'validate-spec': { ref: 'validate-spec/validate-spec' },
    'plan-vpc': { depends: 'validate-spec', when: NOT_BYOH, ref: 'provision-vpc/plan-vpc' },
    'plan-nodes': { depends: 'plan-vpc', when: NOT_BYOH, ref: 'launch-nodes/plan-nodes' },
    'plan-eks-control-plane': { depends: 'plan-vpc', when: PLAN_EKS, ref: 'eks-control-plane/plan-eks-control-plane' },
    'plan-eks-node-groups': { depends: 'plan-eks-control-plane', when: PLAN_EKS, ref: 'eks-node-groups/plan-eks-node-groups' },
    'plan-prepare-hosts': { depends: 'validate-spec', when: PLAN_BYOH, ref: 'prepare-hosts/plan-prepare-hosts' },
    'plan-addons': { depends: 'plan-nodes && plan-eks-node-groups && plan-prepare-hosts', ref: 'install-addons/plan-addons' },
  },
  'cluster-delete': {
    'delete-nodes': { when: DELETE_AWS_EKS, ref: 'launch-nodes/delete-nodes' },
    'delete-bootstrap': { depends: 'delete-nodes && delete-prepare-hosts', when: DELETE_KUBEADM, ref: 'kubeadm-init/delete-bootstrap' },
    'delete-eks-node-groups': { when: DELETE_EKS, ref: 'eks-node-groups/delete-eks-node-groups' },
    'delete-eks-control-plane': { depends: 'delete-eks-node-groups && delete-nodes', when: DELETE_EKS, ref: 'eks-control-plane/delete-eks-control-plane' },
    'delete-vpc': { depends: 'delete-nodes && delete-eks-control-plane', when: DELETE_AWS_EKS, ref: 'provision-vpc/delete-vpc' },
    'delete-prepare-hosts': { when: DELETE_BYOH, ref: 'prepare-hosts/delete-prepare-hosts' },
  },
};

function dagTasks(index: TemplateIndex, name: string): DagTask[] {
  const spec = index.get(name)!.resource.spec;
  return spec.templates!.find((t) => t.name === spec.entrypoint)!.dag!.tasks;
}

/** Every container template of the step WorkflowTemplates, with its WorkflowTemplate's name. */
function stepTemplates(index: TemplateIndex): Array<{ owner: string; t: Template }> {
  return STEPS.flatMap((owner) => (index.get(owner)?.resource.spec.templates ?? []).map((t) => ({ owner, t })));
}

interface Invocation {
  step: string;
  mode: 'apply' | 'plan' | 'delete';
  /** -p key=value, the value as written (usually {{inputs.parameters.key}}). */
  params: Record<string, string>;
}
function invocation(t: Template): Invocation {
  const args = t.container?.args ?? [];
  expect(t.container?.command, t.name).to.deep.equal(['capflow']);
  expect(args[0], t.name).to.equal('step');
  const params: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) if (args[i] === '-p') {
    const [k, ...v] = args[++i]!.split('=');
    params[k!] = v.join('=');
  }
  for (const flag of ['--repo', '--revision', '--cluster-dir', '--outputs']) expect(args, `${t.name} ${flag}`).to.include(flag);
  expect(args[args.indexOf('--outputs') + 1], t.name).to.equal('/tmp/outputs');
  return { step: args[1]!, mode: args.includes('--delete') ? 'delete' : args.includes('--dry-run') ? 'plan' : 'apply', params };
}

interface PropSchema {
  pattern?: string;
  enum?: string[];
}
interface ObjectSchema {
  properties?: Record<string, PropSchema>;
  required?: string[];
}

describe('workflow-templates/: what Argo and the local runner make of our DAGs', function () {
  this.timeout(120_000);

  it('every WorkflowTemplate passes the real `argo lint --offline`, together (templateRefs resolve)', async () => {
    const res = await argoLintOffline(files);
    expect(res.ok, res.output).to.equal(true);
  });

  it('every WorkflowTemplate loads in the local runner (Argo schema, supported fields, refs, inputs)', () => {
    const index = loadTemplates(dir);
    expect([...index.keys()].sort()).to.deep.equal([...DAGS, ...STEPS].sort());
  });

  it('every cluster DAG holds a per-cluster mutex and a deadline, and every step retries only exit 75', () => {
    const index = loadTemplates(dir);
    for (const name of DAGS) {
      const spec = index.get(name)!.resource.spec;
      expect(spec.synchronization?.mutexes?.[0]?.name, name).to.equal('capflow-cluster-{{workflow.parameters.cluster-name}}');
      expect(spec.activeDeadlineSeconds, name).to.be.a('number');
    }
    for (const { owner, t } of stepTemplates(index)) {
      const where = `${owner}/${t.name}`;
      expect(t.activeDeadlineSeconds, where).to.not.equal(undefined);
      expect(t.retryStrategy?.expression, where).to.equal('asInt(lastRetry.exitCode) == 75');
      expect(t.retryStrategy?.retryPolicy, where).to.equal('Always');
      expect(t.container?.command, where).to.deep.equal(['capflow']);
      expect(t.container?.image, where).to.equal('ghcr.io/capflow/capflow:0.1.0');
    }
  });

  it('the EKS steps give EKS’s slow waits room: 45 minutes an attempt, a retry not cut short by backoff.maxDuration', () => {
    const index = loadTemplates(dir);
    for (const owner of ['eks-control-plane', 'eks-node-groups']) {
      for (const t of index.get(owner)!.resource.spec.templates!) {
        const { mode, params } = invocation(t);
        if (mode === 'plan') continue;
        expect(t.activeDeadlineSeconds, t.name).to.equal(2700);
        expect(params['wait-timeout'], t.name).to.equal('{{inputs.parameters.wait-timeout}}');
        expect(t.inputs?.parameters?.find((p) => p.name === 'wait-timeout')?.value, t.name).to.equal('30m');
        // Argo gives a retried pod at most (first attempt's start + maxDuration): it must outlast an attempt.
        const m = /^(\d+)m$/.exec(t.retryStrategy?.backoff?.maxDuration ?? '');
        expect(m && Number(m[1]) * 60, `${t.name} maxDuration`).to.be.greaterThan(2700);
      }
    }
  });

  it('the SSH steps take the SSH settings with the same defaults; prepare-hosts gives package installs 30 minutes an attempt, a retry not cut short by backoff.maxDuration', () => {
    const index = loadTemplates(dir);
    const ssh = { 'connect-timeout': '20s', 'command-timeout': '15m', parallelism: '10' };
    const sshSteps = [...index.get('prepare-hosts')!.resource.spec.templates!, ...['kubeadm-init', 'join-workers'].map((o) => index.get(o)!.resource.spec.templates!.find((t) => t.name === o)!)];
    for (const t of sshSteps) {
      const { mode, params } = invocation(t);
      for (const [key, value] of Object.entries(ssh)) {
        expect(params[key], `${t.name} -p ${key}`).to.equal(`{{inputs.parameters.${key}}}`);
        // a plan only reads: its commands get less time than the 10 minutes the plan has
        expect(t.inputs?.parameters?.find((p) => p.name === key)?.value, `${t.name} ${key}`).to.equal(mode === 'plan' && key === 'command-timeout' ? '2m' : value);
      }
    }
    for (const t of index.get('prepare-hosts')!.resource.spec.templates!) {
      const { mode, params } = invocation(t);
      if (mode === 'plan') {
        expect(t.activeDeadlineSeconds, t.name).to.equal(600);
        continue;
      }
      expect(t.activeDeadlineSeconds, t.name).to.equal(1800);
      const m = /^(\d+)m$/.exec(t.retryStrategy?.backoff?.maxDuration ?? '');
      expect(m && Number(m[1]) * 60, `${t.name} maxDuration`).to.be.greaterThan(1800);
      // --delete finds the hosts by cluster-name when the folder is gone; hosts have no region
      if (mode === 'delete') expect(Object.keys(params).sort(), t.name).to.deep.equal(['cluster-name', 'command-timeout', 'connect-timeout', 'parallelism']);
    }
  });

  it('each cluster DAG has the tasks, depends and `when` of every variant (aws, eks, byoh)', () => {
    const index = loadTemplates(dir);
    for (const name of DAGS) {
      const got = Object.fromEntries(
        dagTasks(index, name).map((t) => [
          t.name,
          { ...(t.depends !== undefined ? { depends: t.depends } : {}), ...(t.when !== undefined ? { when: t.when } : {}), ref: `${t.templateRef?.name}/${t.templateRef?.template}` },
        ]),
      );
      expect(got, name).to.deep.equal(SHAPES[name]);
    }
    // install-addons for eks runs every stage (its default, all); for aws and byoh, the CNI first, then the workers' stage.
    const stage = (task: string): string | undefined => dagTasks(index, 'cluster-apply').find((t) => t.name === task)!.arguments?.parameters?.find((p) => p.name === 'stage')?.value as string | undefined;
    expect([stage('install-cni'), stage('install-addons'), stage('install-addons-eks'), stage('install-cni-byoh'), stage('install-addons-byoh')]).to.deep.equal(['control-plane', 'workers', undefined, 'control-plane', 'workers']);
    const addons = index.get('install-addons')!.resource.spec.templates!.find((t) => t.name === 'install-addons')!;
    expect(addons.inputs?.parameters?.find((p) => p.name === 'stage')?.value).to.equal('all');
    // cluster-delete: the provider is a parameter ("" = unknown: every chain)
    const provider = index.get('cluster-delete')!.resource.spec.arguments!.parameters!.find((p) => p.name === 'provider');
    expect(provider).to.deep.include({ value: '', enum: ['', 'aws', 'eks', 'byoh'] });
  });

  it('every `when` quotes its string operands, and picks the variant for each provider as intended', () => {
    const index = loadTemplates(dir);
    for (const name of DAGS) {
      for (const t of dagTasks(index, name)) {
        if (t.when === undefined) continue;
        // every substitution but the boolean machines parameter is inside single quotes
        const bare = t.when.replace(/'\{\{[^}]+\}\}'/g, "'x'").replace(/\{\{workflow\.parameters\.machines\}\}/g, 'true');
        expect(bare, `${name}/${t.name}: ${t.when}`).to.not.include('{{');
      }
    }
    const substitute = (when: string, provider: string, machines: string): string =>
      when.replaceAll('{{tasks.validate-spec.outputs.parameters.provider}}', provider).replaceAll('{{workflow.parameters.provider}}', provider).replaceAll('{{workflow.parameters.machines}}', machines);
    const cases: Array<[string, string, string, boolean]> = [
      // expression, provider, machines, runs
      [APPLY_AWS, 'aws', 'true', true],
      [APPLY_AWS, 'eks', 'true', false],
      [APPLY_AWS, 'byoh', 'true', false],
      [APPLY_AWS, 'aws', 'false', false],
      [APPLY_EKS, 'eks', 'true', true],
      [APPLY_EKS, 'aws', 'true', false],
      [APPLY_EKS, 'eks', 'false', false],
      [APPLY_EKS, 'byoh', 'true', false],
      [APPLY_BYOH, 'byoh', 'true', true],
      [APPLY_BYOH, 'byoh', 'false', false],
      [APPLY_BYOH, 'aws', 'true', false],
      [APPLY_BYOH, 'eks', 'true', false],
      [NOT_BYOH, 'aws', '', true],
      [NOT_BYOH, 'eks', '', true],
      [NOT_BYOH, 'byoh', '', false],
      [PLAN_AWS, 'aws', '', true],
      [PLAN_AWS, 'eks', '', false],
      [PLAN_EKS, 'eks', '', true],
      [PLAN_EKS, 'aws', '', false],
      [PLAN_BYOH, 'byoh', '', true],
      [PLAN_BYOH, 'aws', '', false],
      [PLAN_BYOH, 'eks', '', false],
      [DELETE_KUBEADM, '', '', true],
      [DELETE_KUBEADM, 'aws', '', true],
      [DELETE_KUBEADM, 'byoh', '', true],
      [DELETE_KUBEADM, 'eks', '', false],
      [DELETE_AWS_EKS, '', '', true],
      [DELETE_AWS_EKS, 'aws', '', true],
      [DELETE_AWS_EKS, 'eks', '', true],
      [DELETE_AWS_EKS, 'byoh', '', false],
      [DELETE_EKS, '', '', true],
      [DELETE_EKS, 'eks', '', true],
      [DELETE_EKS, 'aws', '', false],
      [DELETE_EKS, 'byoh', '', false],
      [DELETE_BYOH, '', '', true],
      [DELETE_BYOH, 'byoh', '', true],
      [DELETE_BYOH, 'aws', '', false],
      [DELETE_BYOH, 'eks', '', false],
    ];
    for (const [when, provider, machines, runs] of cases) expect(evaluateWhen(substitute(when, provider, machines)), `${when} with provider=${provider} machines=${machines}`).to.equal(runs);
  });

  describe('each step template against its executor (executors/index.ts: inputSchema, outputSchema)', () => {
    let executors: readonly Executor[];
    before(async () => {
      executors = (await import('../../executors/index.js')).executors;
    });

    for (const owner of STEPS) {
      it(`${owner}: \`capflow step ${owner}\` exists, takes every -p its templates pass, and writes every output they read`, () => {
        const index = loadTemplates(dir);
        const executor = executors.find((e) => e.id === owner);
        expect(executor, `executors/index.ts has no step ${owner}`).to.not.equal(undefined);
        const input = executor!.inputSchema as ObjectSchema;
        const output = executor!.outputSchema as ObjectSchema;
        for (const t of index.get(owner)!.resource.spec.templates!) {
          const where = `${owner}/${t.name}`;
          const inv = invocation(t);
          expect(inv.step, where).to.equal(owner);
          if (inv.mode === 'delete') expect(executor!.supportsDelete, `${where}: --delete`).to.equal(true);
          if (inv.mode === 'plan') expect(executor!.supportsDryRun, `${where}: --dry-run`).to.equal(true);
          for (const [key, value] of Object.entries(inv.params)) {
            const prop = input.properties?.[key];
            expect(prop, `${where}: -p ${key} is not in ${owner}'s inputSchema`).to.not.equal(undefined);
            // the value the template passes by default (or literally) is one the executor accepts
            const ref = /^\{\{inputs\.parameters\.([^}]+)\}\}$/.exec(value);
            const declared = ref ? t.inputs?.parameters?.find((p) => p.name === ref[1]) : undefined;
            const given = ref ? declared?.value : value;
            if (typeof given === 'string' && given !== '') {
              if (prop!.pattern) expect(given, `${where}: ${key} default`).to.match(new RegExp(prop!.pattern));
              if (prop!.enum) expect(prop!.enum, `${where}: ${key} default`).to.include(given);
            }
            for (const e of declared?.enum ?? []) if (prop!.enum) expect(prop!.enum, `${where}: ${key} enum`).to.include(e);
          }
          // Argo fails a step whose output file is missing: the executor must always write each one.
          for (const o of t.outputs?.parameters ?? []) {
            expect(o.valueFrom?.path, `${where}: ${o.name}`).to.equal(`/tmp/outputs/${o.name}`);
            expect(output.required ?? [], `${where}: output ${o.name} is not a required output of ${owner}`).to.include(o.name);
          }
        }
      });
    }
  });
});
