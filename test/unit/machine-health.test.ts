/**
 * MachineHealthCheck rules as Cluster API defines them: Go durations, maxUnhealthy (int or a
 * percentage of the selected machines, rounded down), unhealthyRange (taking precedence),
 * nodeStartupTimeout, the judgement of machines by their Nodes' conditions, and the spec problems
 * refused at file:line before any call.
 */
import { expect } from 'chai';
import { formatProblem, healthCheckRules, loadClusterSpec, maxUnhealthyOf, parseGoDuration, parseUnhealthyRange, remediationAllowed, validateClusterSpec, type HealthCheckRule } from '../../src/spec/index.js';
import { describeReplacement, judgeHealth, type NodeHealth } from '../../src/aws/machine-health.js';
import type { Machine } from '../../src/aws/instances.js';
import { cleanupSpecFolders, displayRootOf, minimalAws, specFolder } from '../fixtures/spec/support.js';

const mhc = (spec: string, name = 'dev-mhc'): string => `apiVersion: cluster.x-k8s.io/v1beta1
kind: MachineHealthCheck
metadata:
  name: ${name}
spec:
  clusterName: dev
${spec}`;

const WORKER_SELECTOR = `  selector:
    matchLabels:
      cluster.x-k8s.io/deployment-name: dev-md-0
`;

async function problemsOf(files: Record<string, string>): Promise<string[]> {
  const dir = await specFolder(minimalAws(files));
  const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
  return problems.map(formatProblem);
}

async function rulesOf(spec: string): Promise<HealthCheckRule[]> {
  const model = await loadClusterSpec(await specFolder(minimalAws({ 'mhc.yaml': mhc(spec) })));
  return healthCheckRules(model);
}

const NOW = Date.parse('2026-06-01T12:00:00Z');
const ago = (ms: number) => new Date(NOW - ms).toISOString();

function machine(i: number, over: Partial<Machine> = {}): Machine {
  return {
    name: `dev-md-0-h-${i}`,
    instanceId: `i-${i}`,
    privateIp: `10.0.0.${i}`,
    privateDns: `ip-10-0-0-${i}.ec2.internal`,
    az: 'us-east-1a',
    role: 'node',
    group: 'dev-md-0',
    state: 'running',
    templateHash: 'h',
    slot: i,
    launchTime: ago(60 * 60_000),
    ...over,
  };
}

const ready = (status: string, sinceMs: number): NodeHealth => ({ conditions: [{ type: 'Ready', status, lastTransitionTime: ago(sinceMs) }] });

describe('MachineHealthCheck rules', function () {
  this.timeout(30_000);
  after(cleanupSpecFolders);

  it('Go durations as metav1.Duration parses them', () => {
    expect(parseGoDuration('5m')).to.equal(300_000);
    expect(parseGoDuration('300s')).to.equal(300_000);
    expect(parseGoDuration('1h30m')).to.equal(5_400_000);
    expect(parseGoDuration('1.5h')).to.equal(5_400_000);
    expect(parseGoDuration('500ms')).to.equal(500);
    expect(parseGoDuration('0')).to.equal(0);
    for (const bad of ['5', 'abc', '5 m', '', '1d', 'm5']) expect(parseGoDuration(bad), bad).to.equal(undefined);
    expect(parseGoDuration('-1s')).to.equal(-1000);
  });

  it('maxUnhealthy: an int as it is, a percentage of the selected machines rounded down; a string without % is refused', () => {
    expect(maxUnhealthyOf(2, 10)).to.equal(2);
    expect(maxUnhealthyOf('40%', 25)).to.equal(10);
    expect(maxUnhealthyOf('40%', 6)).to.equal(2);
    expect(maxUnhealthyOf('40%', 4)).to.equal(1);
    expect(maxUnhealthyOf('100%', 3)).to.equal(3);
    expect(maxUnhealthyOf('0%', 3)).to.equal(0);
    expect(maxUnhealthyOf('2', 3)).to.equal(undefined);
    expect(maxUnhealthyOf('abc', 3)).to.equal(undefined);
    expect(maxUnhealthyOf(-1, 3)).to.equal(undefined);
  });

  it('remediation stops when more than maxUnhealthy are unhealthy, and outside unhealthyRange', () => {
    expect(remediationAllowed({ kind: 'max', value: '40%' }, 1, 4)).to.deep.equal({ allowed: true });
    expect(remediationAllowed({ kind: 'max', value: '40%' }, 3, 4)).to.deep.equal({ allowed: false, why: '3 of 4 machines unhealthy, more than maxUnhealthy 40% (1 of 4)' });
    expect(remediationAllowed({ kind: 'max', value: 2 }, 2, 5).allowed).to.equal(true);
    expect(remediationAllowed({ kind: 'max', value: 0 }, 1, 1)).to.deep.equal({ allowed: false, why: '1 of 1 machine unhealthy, more than maxUnhealthy 0' });
    expect(parseUnhealthyRange('[1-3]')).to.deep.equal({ min: 1, max: 3 });
    expect(parseUnhealthyRange('[3-1]')).to.equal(undefined);
    expect(parseUnhealthyRange('1-3')).to.equal(undefined);
    const range = { kind: 'range', min: 2, max: 3, text: '[2-3]' } as const;
    expect([1, 2, 3, 4].map((n) => remediationAllowed(range, n, 10).allowed)).to.deep.equal([false, true, true, false]);
    expect(remediationAllowed(range, 4, 10).why).to.equal('4 of 10 machines unhealthy, outside unhealthyRange [2-3]');
  });

  it('defaults: nodeStartupTimeout 10m, maxUnhealthy 100%; unhealthyRange takes precedence over maxUnhealthy (a warning)', async () => {
    const [rule] = await rulesOf(`${WORKER_SELECTOR}  unhealthyConditions:\n  - type: Ready\n    status: Unknown\n    timeout: 5m\n`);
    expect(rule!.nodeStartupTimeoutMs).to.equal(600_000);
    expect(rule!.limit).to.deep.equal({ kind: 'max', value: '100%', field: 'maxUnhealthy' });
    expect(rule!.groups.map((g) => g.group)).to.deep.equal(['dev-md-0']);
    const [both] = await rulesOf(`${WORKER_SELECTOR}  maxUnhealthy: 1\n  unhealthyRange: "[1-3]"\n`);
    expect(both!.limit).to.deep.equal({ kind: 'range', min: 1, max: 3, text: '[1-3]', field: 'unhealthyRange' });
    const problems = await problemsOf({ 'mhc.yaml': mhc(`${WORKER_SELECTOR}  maxUnhealthy: 1\n  unhealthyRange: "[1-3]"\n`) });
    expect(problems).to.deep.equal(['clusters/test/mhc.yaml:10:17 MachineHealthCheck/dev-mhc spec.maxUnhealthy: warning: maxUnhealthy is ignored: unhealthyRange takes precedence (as in Cluster API) hint: keep one of the two']);
  });

  it('selects machine groups by the labels Cluster API gives Machines: deployment-name, control-plane, the template labels', async () => {
    const cp = await rulesOf(`  selector:\n    matchLabels:\n      cluster.x-k8s.io/control-plane: ""\n`);
    expect(cp[0]!.groups.map((g) => g.group)).to.deep.equal(['control-plane']);
    const all = await rulesOf(`  selector:\n    matchExpressions:\n    - key: cluster.x-k8s.io/cluster-name\n      operator: In\n      values: [dev]\n`);
    expect(all[0]!.groups.map((g) => g.group)).to.deep.equal(['control-plane', 'dev-md-0']);
  });

  it('the v1beta2 shape (Cluster API v1.11): checks.unhealthyNodeConditions in seconds, remediation.triggerIf, templateRef refused', async () => {
    const v2 = (spec: string) => `apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineHealthCheck
metadata:
  name: dev-mhc
spec:
  clusterName: dev
${WORKER_SELECTOR}${spec}`;
    const spec = `  checks:\n    nodeStartupTimeoutSeconds: 600\n    unhealthyNodeConditions:\n    - type: Ready\n      status: Unknown\n      timeoutSeconds: 300\n  remediation:\n    triggerIf:\n      unhealthyLessThanOrEqualTo: 40%\n`;
    const model = await loadClusterSpec(await specFolder(minimalAws({ 'mhc.yaml': v2(spec) })));
    const [rule] = healthCheckRules(model);
    expect(rule!.conditions).to.deep.equal([{ type: 'Ready', status: 'Unknown', timeoutMs: 300_000, timeout: '300s', index: 0, path: ['spec', 'checks', 'unhealthyNodeConditions', 0] }]);
    expect(rule!.nodeStartupTimeoutMs).to.equal(600_000);
    const ms = [1, 2, 3].map((i) => machine(i));
    const v = judgeHealth([rule!], ms, new Map(ms.map((m) => [m.privateDns, ready('Unknown', 400_000)])), NOW, () => 'clusters/test/mhc.yaml:17');
    expect(v.notes.map((n) => n.detail)).to.deep.equal(['remediation stopped: 3 of 3 machines unhealthy, more than unhealthyLessThanOrEqualTo 40% (1 of 3) (MachineHealthCheck dev-mhc, clusters/test/mhc.yaml:17)']);
    expect(v.notes[0]!.spec.path).to.deep.equal(['spec', 'remediation', 'triggerIf', 'unhealthyLessThanOrEqualTo']);
    const refused = await problemsOf({ 'mhc.yaml': v2(`  remediation:\n    templateRef:\n      apiVersion: infrastructure.cluster.x-k8s.io/v1beta2\n      kind: AWSRemediationTemplate\n      name: x\n`) });
    expect(refused.some((p) => p.startsWith('clusters/test/mhc.yaml:11:5 MachineHealthCheck/dev-mhc spec.remediation.templateRef: external remediation (templateRef) is not supported')), refused.join('\n')).to.equal(true);
  });

  describe('judging machines', () => {
    let rule: HealthCheckRule;
    before(async () => {
      [rule] = (await rulesOf(`${WORKER_SELECTOR}  nodeStartupTimeout: 10m\n  unhealthyConditions:\n  - type: Ready\n    status: Unknown\n    timeout: 5m\n  - type: Ready\n    status: "False"\n    timeout: 5m\n`)) as [HealthCheckRule];
    });
    const where = () => 'clusters/test/mhc.yaml:12';

    it('a Node Ready=Unknown for longer than the timeout (from lastTransitionTime) is replaced, named with the check and its line', () => {
      const m = machine(1);
      const v = judgeHealth([rule], [m, machine(2)], new Map([[m.privateDns, ready('Unknown', 372_000)], [machine(2).privateDns, ready('True', 900_000)]]), NOW, where);
      expect(v.notes).to.deep.equal([]);
      expect(v.replace.map(describeReplacement)).to.deep.equal([
        'replace dev-md-0-h-1/i-1 (ip-10-0-0-1.ec2.internal): Ready=Unknown for 6m12s > 5m (MachineHealthCheck dev-mhc, clusters/test/mhc.yaml:12)',
      ]);
      expect(v.replace[0]!.spec).to.deep.equal({ kind: 'MachineHealthCheck', name: 'dev-mhc', path: ['spec', 'unhealthyConditions', 0] });
    });

    it('not before the timeout has passed (strictly after, as upstream), and a condition of another status is healthy', () => {
      const m = machine(1);
      expect(judgeHealth([rule], [m], new Map([[m.privateDns, ready('Unknown', 300_000)]]), NOW).replace).to.deep.equal([]);
      expect(judgeHealth([rule], [m], new Map([[m.privateDns, ready('True', 3_600_000)]]), NOW).replace).to.deep.equal([]);
      expect(judgeHealth([rule], [m], new Map([[m.privateDns, ready('False', 301_000)]]), NOW).replace.map((u) => u.reason)).to.deep.equal(['Ready=False for 5m1s > 5m (MachineHealthCheck dev-mhc)']);
    });

    it('no Node: unhealthy only once nodeStartupTimeout passed since the launch; 0 turns that off', async () => {
      const young = machine(1, { launchTime: ago(9 * 60_000) });
      const old = machine(2, { launchTime: ago(11 * 60_000) });
      const v = judgeHealth([rule], [young, old], new Map(), NOW);
      expect(v.replace.map((u) => `${u.machine.name}: ${u.reason}`)).to.deep.equal(['dev-md-0-h-2: no Node for 11m > 10m (nodeStartupTimeout) (MachineHealthCheck dev-mhc)']);
      const [off] = await rulesOf(`${WORKER_SELECTOR}  nodeStartupTimeout: "0"\n`);
      expect(judgeHealth([off!], [old], new Map(), NOW).replace).to.deep.equal([]);
    });

    it('machines not yet healthy count against maxUnhealthy as upstream counts them (expected - currentHealthy)', async () => {
      const [r] = await rulesOf(`${WORKER_SELECTOR}  maxUnhealthy: 40%\n  unhealthyConditions:\n  - type: Ready\n    status: Unknown\n    timeout: 5m\n`);
      const ms = [1, 2, 3, 4].map((i) => machine(i));
      // one past its timeout, one Unknown but not for long enough, one without a Node yet: 3 of 4 not healthy
      const nodes = new Map<string, NodeHealth>([
        [ms[0]!.privateDns, ready('Unknown', 600_000)],
        [ms[1]!.privateDns, ready('Unknown', 10_000)],
        [ms[3]!.privateDns, ready('True', 600_000)],
      ]);
      const v = judgeHealth([r!], [ms[0]!, ms[1]!, machine(3, { launchTime: ago(60_000) }), ms[3]!], nodes, NOW, where);
      expect(v.replace).to.deep.equal([]);
      expect(v.notes.map((n) => n.detail)).to.deep.equal(['remediation stopped: 3 of 4 machines unhealthy, more than maxUnhealthy 40% (1 of 4) (MachineHealthCheck dev-mhc, clusters/test/mhc.yaml:12)']);
      // with the young ones healthy, 1 of 4 is within 40%
      const healthy = new Map(nodes);
      healthy.set(ms[1]!.privateDns, ready('True', 600_000));
      healthy.set(machine(3).privateDns, ready('True', 600_000));
      expect(judgeHealth([r!], ms, healthy, NOW).replace.map((u) => u.machine.name)).to.deep.equal(['dev-md-0-h-1']);
    });

    it('a control plane machine is reported, not replaced; machines of other groups and terminated ones are not judged, stopped ones are', async () => {
      const [cpRule] = await rulesOf(`  selector:\n    matchLabels:\n      cluster.x-k8s.io/control-plane: ""\n  unhealthyConditions:\n  - type: Ready\n    status: Unknown\n    timeout: 5m\n`);
      const cp = machine(7, { role: 'control-plane', group: 'control-plane', name: 'dev-control-plane-h-0' });
      const v = judgeHealth([cpRule!], [cp, machine(1)], new Map([[cp.privateDns, ready('Unknown', 600_000)], [machine(1).privateDns, ready('Unknown', 600_000)]]), NOW);
      expect(v.replace).to.deep.equal([]);
      expect(v.notes[0]!.detail).to.match(/^dev-control-plane-h-0 \(ip-10-0-0-7\.ec2\.internal\) is unhealthy, not replaced: control plane remediation is not supported/);
      expect(judgeHealth([rule], [machine(1, { state: 'shutting-down' })], new Map(), NOW).replace).to.deep.equal([]);
      expect(judgeHealth([rule], [machine(1, { state: 'stopped' })], new Map([[machine(1).privateDns, ready('Unknown', 600_000)]]), NOW).replace.map((u) => u.machine.name)).to.deep.equal(['dev-md-0-h-1']);
    });
  });

  describe('refused at file:line before any call', () => {
    const cases: Array<[string, string, string]> = [
      ['a timeout that is not a duration', `${WORKER_SELECTOR}  unhealthyConditions:\n  - type: Ready\n    status: Unknown\n    timeout: 5 minutes\n`, 'clusters/test/mhc.yaml:13:14 MachineHealthCheck/dev-mhc spec.unhealthyConditions[0].timeout: timeout must be a non-negative duration such as 5m or 300s, not "5 minutes"'],
      ['maxUnhealthy "abc"', `${WORKER_SELECTOR}  maxUnhealthy: abc\n`, 'clusters/test/mhc.yaml:10:17 MachineHealthCheck/dev-mhc spec.maxUnhealthy: maxUnhealthy must be a non-negative integer or a percentage such as 40%, not "abc"'],
      ['an unhealthyRange whose max is below its min', `${WORKER_SELECTOR}  unhealthyRange: "[3-1]"\n`, 'clusters/test/mhc.yaml:10:19 MachineHealthCheck/dev-mhc spec.unhealthyRange: unhealthyRange must be [min-max] with max at least min, such as [1-3], not "[3-1]"'],
      ['a nodeStartupTimeout under 30s', `${WORKER_SELECTOR}  nodeStartupTimeout: 10s\n`, 'clusters/test/mhc.yaml:10:23 MachineHealthCheck/dev-mhc spec.nodeStartupTimeout: nodeStartupTimeout must be at least 30s (or 0 to turn it off), not 10s'],
      ['an empty selector', `  selector: {}\n`, 'clusters/test/mhc.yaml:7:3 MachineHealthCheck/dev-mhc spec.selector: selector must not be empty'],
      ['external remediation', `${WORKER_SELECTOR}  remediationTemplate:\n    apiVersion: infrastructure.cluster.x-k8s.io/v1beta2\n    kind: AWSRemediationTemplate\n    name: x\n    namespace: default\n`, 'clusters/test/mhc.yaml:10:3 MachineHealthCheck/dev-mhc spec.remediationTemplate: external remediation (remediationTemplate) is not supported'],
    ];
    for (const [name, spec, expected] of cases) {
      it(name, async () => {
        const problems = await problemsOf({ 'mhc.yaml': mhc(spec) });
        expect(problems.some((p) => p.startsWith(expected)), problems.join('\n')).to.equal(true);
        const dir = await specFolder(minimalAws({ 'mhc.yaml': mhc(spec) }));
        let refused = false;
        await loadClusterSpec(dir).catch(() => (refused = true));
        expect(refused, 'loadClusterSpec refuses it (every step loads the spec first)').to.equal(true);
      });
    }

    it('a selector that selects no machine is a warning', async () => {
      const problems = await problemsOf({ 'mhc.yaml': mhc(`  selector:\n    matchLabels:\n      cluster.x-k8s.io/deployment-name: nope\n`) });
      expect(problems).to.deep.equal([
        'clusters/test/mhc.yaml:7:3 MachineHealthCheck/dev-mhc spec.selector: warning: selector selects no machine of cluster dev: nothing is checked hint: machines carry cluster.x-k8s.io/deployment-name: <MachineDeployment>, cluster.x-k8s.io/control-plane: "" and their template\'s labels',
      ]);
    });
  });
});
