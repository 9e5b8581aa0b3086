/**
 * The crash suite (test/support/crash-suite.ts, scenarios in test/support/crash-scenarios.ts):
 * every AWS-calling step, create and delete, run as the image runs it (`capflow step`, a child
 * process) and SIGKILLed by the fault proxy at each selected mutating call (after its answer; before
 * it, for the calls that make something), then rerun; the world must equal the one an uninterrupted
 * run makes (no duplicate, nothing leaked or missing, the same attributes), and a second rerun must
 * make no mutating call. Each scenario reports `N kill points, 0 divergences`.
 *
 * Points: CAPFLOW_CRASH_POINTS (default sample: the first and the last call of each mutating action);
 * launch-nodes and the EKS steps have few calls and are killed at every one. `bench/crash-suite.bench.ts`
 * runs every point of every step. Cases run side by side on the crash beds (CAPFLOW_CRASH_BEDS, default 2).
 *
 * install-addons (no AWS: it writes to a workload kube-apiserver) runs on its own engine
 * (test/support/crash-kube.ts): one envtest for its cases, each write of the uninterrupted run (as the
 * API server's audit log shows it) a kill point, the SIGKILL timed on the audit log (at or shortly
 * after the write); its delete is the prune of an addon removed from Git.
 *
 * Beside 0 divergences, each scenario's reference world is checked for what the step must make
 * (so every case, being equal to it, makes it too): e.g. every EC2 resource carries the cluster's
 * ownership tag (no orphan), the control plane machine is the API target group's only target.
 */
import { expect } from 'chai';
import { startCrashBeds, stopCrashBeds, type CrashBed } from '../support/crash-beds.js';
import { describeDivergences, resultLine, runScenario, type Scenario, type ScenarioResult } from '../support/crash-suite.js';
import { runKubeScenario, startKubeBed, stopKubeBed, type KubeBed } from '../support/crash-kube.js';
import {
  EKS,
  POOL,
  SELF_MANAGED,
  eksControlPlaneCreate,
  eksControlPlaneDelete,
  eksNodeGroupsCreate,
  eksNodeGroupsDelete,
  eksNodeGroupsTemplateCreate,
  eksNodeGroupsTemplateDelete,
  installAddonsCreate,
  installAddonsDelete,
  launchNodesCreate,
  launchNodesDelete,
  launchNodesPoolCreate,
  launchNodesPoolDelete,
  provisionVpcCreate,
  provisionVpcDelete,
} from '../support/crash-scenarios.js';

type Ec2World = Record<string, Array<{ id?: string; name?: string; tags: Record<string, string>; targets?: string[] }>>;
type EksWorld = { eks: { clusters: Array<{ name: string; status: string; groups: unknown[]; addons: unknown[] }>; roles: unknown[]; providers: number }; ec2: Ec2World };

const owned = (cluster: string) => `sigs.k8s.io/cluster-api-provider-aws/cluster/${cluster}`;
const counts = (w: Ec2World) => Object.fromEntries(Object.entries(w).map(([k, v]) => [k, v.length]));
/** Every EC2 resource the step made carries the cluster's ownership tag (load balancers, target groups and launch templates carry theirs elsewhere). */
function expectAllOwned(w: Ec2World, cluster: string): void {
  for (const [kind, list] of Object.entries(w)) {
    if (['load-balancer', 'target-group', 'launch-template', 'auto-scaling-group'].includes(kind)) continue;
    for (const r of list) expect(r.tags[owned(cluster)], `${kind} ${r.id} is not owned by ${cluster} (an orphan)`).to.equal('owned');
  }
}

function zeroDivergences(r: ScenarioResult): void {
  console.log(`      ${resultLine(r)} (${(r.wallMs / 1000).toFixed(0)} s)`);
  expect(r.killPoints, `${r.label}: kill points`).to.be.greaterThan(0);
  expect(r.divergences.length, `${r.label} diverged:\n${describeDivergences(r)}`).to.equal(0);
}

function suite(title: string, iamManagedPolicies: boolean, cases: Array<[Scenario, (r: ScenarioResult) => void]>): void {
  describe(title, function () {
    this.timeout(30 * 60_000);
    let beds: CrashBed[] = [];
    before(async () => {
      beds = await startCrashBeds(undefined, { iamManagedPolicies });
    });
    after(async () => {
      await stopCrashBeds(beds);
    });
    for (const [scenario, check] of cases) {
      it(`${scenario.label ?? `${scenario.step.id} ${scenario.phase}`}: 0 divergences`, async () => {
        const r = await runScenario(beds, scenario);
        check(r);
        zeroDivergences(r);
      });
    }
  });
}

suite('crash suite: provision-vpc and launch-nodes killed at each mutating call, rerun, compared with the uninterrupted run', false, [
  [
    provisionVpcCreate,
    (r) => {
      const w = r.reference as Ec2World;
      expect(counts(w)).to.include({ vpc: 1, subnet: 6, 'internet-gateway': 1, eip: 3, 'nat-gateway': 3, 'route-table': 4, 'load-balancer': 1, 'target-group': 1 });
      expectAllOwned(w, SELF_MANAGED.cluster);
      expect(r.referenceCalls.length).to.be.greaterThan(10);
      // the first call of each action that makes something is also killed before its answer
      expect(r.killPoints).to.be.greaterThan(new Set(r.referenceCalls).size);
    },
  ],
  [
    provisionVpcDelete,
    (r) => {
      expect(r.reference, 'a delete leaves nothing').to.deep.equal({});
      expect(r.referenceCalls.length).to.be.greaterThan(10);
    },
  ],
  [
    launchNodesCreate,
    (r) => {
      expect([...r.referenceCalls].sort()).to.deep.equal(['RegisterTargets', 'RunInstances', 'RunInstances', 'RunInstances']);
      expect(r.killPoints, 'every call, after and before its answer').to.equal(8);
      const w = r.reference as Ec2World;
      const machines = w['instance']!;
      expect(machines).to.have.length(3);
      expect(new Set(machines.map((m) => m.id)).size, 'one instance per machine name').to.equal(3);
      expectAllOwned(w, SELF_MANAGED.cluster);
      const cp = machines.filter((m) => m.tags['sigs.k8s.io/cluster-api-provider-aws/role'] === 'control-plane').map((m) => m.id);
      expect(cp).to.have.length(1);
      expect(w['target-group']![0]!.targets, 'the control plane machine is the API target').to.deep.equal(cp);
    },
  ],
  [
    launchNodesDelete,
    (r) => {
      const w = r.reference as Ec2World;
      expect(w['instance'] ?? [], 'no machine left').to.deep.equal([]);
      expect(w['target-group']![0]!.targets, 'no target left').to.deep.equal([]);
      expect(w['vpc'], 'the network stays').to.have.length(1);
    },
  ],
  [
    launchNodesPoolCreate,
    (r) => {
      expect(r.referenceCalls).to.include.members(['RunInstances', 'CreateLaunchTemplate', 'CreateAutoScalingGroup']);
      const w = r.reference as Record<string, Array<Record<string, unknown>>>;
      expect(w['auto-scaling-group']).to.have.length(1);
      expect(w['auto-scaling-group']![0]).to.deep.include({ name: POOL.pool, min: 2, max: 10, desired: 3 });
      expect((w['auto-scaling-group']![0]!['tags'] as Record<string, string>)[owned(POOL.cluster)]).to.equal('owned');
      expect(w['launch-template']).to.have.length(1);
    },
  ],
  [
    launchNodesPoolDelete,
    (r) => {
      const w = r.reference as Ec2World;
      expect(w['auto-scaling-group'] ?? []).to.deep.equal([]);
      expect(w['launch-template'] ?? []).to.deep.equal([]);
      expect(w['instance'] ?? []).to.deep.equal([]);
    },
  ],
]);

suite('crash suite: eks-control-plane and eks-node-groups killed at each mutating call, rerun, compared with the uninterrupted run (addons from the EKS stand-in)', true, [
  [
    eksControlPlaneCreate,
    (r) => {
      const w = r.reference as EksWorld;
      expect(w.eks.clusters.map((c) => [c.name, c.status])).to.deep.equal([[EKS.cluster, 'ACTIVE']]);
      expect(w.eks.clusters[0]!.addons).to.have.length(3);
      expect(r.referenceCalls.length).to.be.greaterThan(5);
    },
  ],
  [
    eksControlPlaneDelete,
    (r) => {
      expect((r.reference as EksWorld).eks, 'nothing of EKS or IAM left').to.deep.equal({ clusters: [], roles: [], providers: 0 });
    },
  ],
  [
    eksNodeGroupsCreate,
    (r) => {
      const groups = (r.reference as EksWorld).eks.clusters[0]!.groups as Array<{ status: string }>;
      expect(groups.map((g) => g.status)).to.deep.equal(['ACTIVE', 'ACTIVE']);
    },
  ],
  [
    eksNodeGroupsDelete,
    (r) => {
      expect((r.reference as EksWorld).eks.clusters[0]!.groups, 'no node group left').to.deep.equal([]);
    },
  ],
  [
    eksNodeGroupsTemplateCreate,
    (r) => {
      expect(r.referenceCalls).to.deep.equal(['CreateLaunchTemplate', 'CreateNodegroup']);
      const w = r.reference as EksWorld;
      expect((w.eks.clusters[0]!.groups as Array<{ status: string }>).map((g) => g.status)).to.deep.equal(['ACTIVE']);
      expect(w.ec2['launch-template'], 'one template, version 1').to.deep.equal([{ id: 'lt:eks-prod-general', latest: 1, tags: w.ec2['launch-template']![0]!.tags }]);
      expect(w.ec2['launch-template']![0]!.tags[owned(EKS.cluster)]).to.equal('owned');
    },
  ],
  [
    eksNodeGroupsTemplateDelete,
    (r) => {
      const w = r.reference as EksWorld;
      expect(w.eks.clusters[0]!.groups, 'no node group left').to.deep.equal([]);
      expect(w.ec2['launch-template'] ?? [], 'its template deleted after it').to.deep.equal([]);
    },
  ],
]);

describe('crash suite: install-addons killed at each write to a real kube-apiserver (envtest, its audit log timing the kill; pods run by kwok, a kubelet stand-in), rerun, compared with the uninterrupted run', function () {
  this.timeout(10 * 60_000);
  let bed: KubeBed | undefined;
  before(async () => {
    bed = await startKubeBed();
  });
  after(async () => {
    await stopKubeBed(bed);
  });
  type AddonsWorld = { objects: Array<{ kind: string; name: string; namespace?: string }>; status: Record<string, { inventory: unknown[] }> };
  const names = (w: AddonsWorld) => w.objects.map((o) => `${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name}`).sort();

  it('install-addons create: 0 divergences', async () => {
    const r = await runKubeScenario(bed!, installAddonsCreate);
    const w = r.reference as AddonsWorld;
    expect(names(w)).to.deep.equal(['ConfigMap apps/db-settings', 'ConfigMap apps/web-settings', 'ConfigMap kube-system/base-settings', 'Deployment apps/db', 'Deployment apps/web', 'Namespace apps']);
    expect(Object.keys(w.status)).to.deep.equal(['crs-base', 'db', 'web']);
    expect(r.referenceCalls.length, 'a write per object').to.equal(6);
    zeroDivergences(r);
  });

  it('install-addons delete (web removed from Git: pruned): 0 divergences', async () => {
    const r = await runKubeScenario(bed!, installAddonsDelete);
    const w = r.reference as AddonsWorld;
    expect(names(w)).to.deep.equal(['ConfigMap apps/db-settings', 'ConfigMap kube-system/base-settings', 'Deployment apps/db', 'Namespace apps']);
    expect(Object.keys(w.status)).to.deep.equal(['crs-base', 'db']);
    expect([...r.referenceCalls].sort()).to.deep.equal(['delete configmaps/apps/web-settings', 'delete deployments/apps/web']);
    zeroDivergences(r);
  });
});
