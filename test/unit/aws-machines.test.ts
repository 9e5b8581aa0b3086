/** The pure parts of launch-nodes: machine parameters, template hash, image naming, and the round arithmetic. */
import { expect } from 'chai';
import type { AWSMachineSpec } from '../../src/spec/model.js';
import { instanceParams, templateHash } from '../../src/aws/machine-params.js';
import { architectureOf, imageNamePattern, newestImage } from '../../src/aws/images.js';
import { decideRound, freeRange, holdWorkersWhileControlPlaneRolls, orderForRemoval, spread, type MachineGroup } from '../../src/aws/machines.js';
import { resolveIntOrPercent } from '../../src/spec/index.js';
import { batchToken, type Batch, type Machine } from '../../src/aws/instances.js';

const spec: AWSMachineSpec = { instanceType: 'm6i.large', rootVolume: { size: 80, type: 'gp3', encrypted: true }, sshKeyName: 'k', additionalSecurityGroups: [{ id: 'sg-extra' }, { filters: [] }] };

function group(over: Partial<MachineGroup> = {}): MachineGroup {
  return {
    name: 'md',
    owner: 'md',
    role: 'node',
    replicas: 3,
    failureDomains: ['a', 'b', 'c'],
    spec,
    templateName: 't',
    kubernetesVersion: 'v1.31.4',
    hash: 'new',
    maxSurge: 1,
    maxUnavailable: 0,
    deletePolicy: 'Oldest',
    securityGroupIds: [],
    registerWithLoadBalancer: false,
    ...over,
  };
}

function machine(slot: number, over: Partial<Machine> = {}): Machine {
  return {
    name: `md-${over.templateHash ?? 'new'}-${slot}`,
    instanceId: `i-${over.templateHash ?? 'new'}${slot}`,
    privateIp: '',
    privateDns: '',
    az: 'abc'[slot % 3]!,
    role: 'node',
    group: 'md',
    state: 'running',
    templateHash: 'new',
    slot,
    launchTime: `2026-01-01T00:00:0${slot}Z`,
    ...over,
  };
}

describe('aws machines: parameters, hash, images and the rolling arithmetic', () => {
  it('instanceParams: root volume, IMDSv2 required by default, additional groups by id, spot, public IP, tags', () => {
    const p = instanceParams({ ...spec, spotMarketOptions: { maxPrice: '0.05' }, publicIP: false, additionalTags: { team: 'x' }, nonRootVolumes: [{ size: 10, type: 'gp3' }] }, {
      imageId: 'ami-1',
      securityGroupIds: ['sg-node'],
    });
    expect(p.blockDeviceMappings).to.deep.equal([
      { DeviceName: '/dev/sda1', Ebs: { DeleteOnTermination: true, VolumeSize: 80, VolumeType: 'gp3', Encrypted: true } },
      { DeviceName: '/dev/sdb', Ebs: { DeleteOnTermination: true, VolumeSize: 10, VolumeType: 'gp3' } },
    ]);
    expect(p.metadataOptions.HttpTokens).to.equal('required');
    expect(p.securityGroupIds).to.deep.equal(['sg-node', 'sg-extra']);
    expect(p.spot).to.deep.equal({ maxPrice: '0.05' });
    expect(p.associatePublicIp).to.equal(false);
    expect(p.extraTags).to.deep.equal({ team: 'x' });
    expect(p.keyName).to.equal('k');
    expect(instanceParams({ instanceType: 't3.small', instanceMetadataOptions: { httpTokens: 'optional' } }, { imageId: 'a', securityGroupIds: [] }).metadataOptions.HttpTokens).to.equal('optional');
  });

  it('templateHash: 10 hex, stable under key order, changes with content and extra, ignores additionalTags', () => {
    const h = templateHash(spec, { version: 'v1' });
    expect(h).to.match(/^[0-9a-f]{10}$/);
    const reordered = { sshKeyName: 'k', rootVolume: { encrypted: true, type: 'gp3', size: 80 }, additionalSecurityGroups: spec.additionalSecurityGroups, instanceType: 'm6i.large' };
    expect(templateHash(reordered, { version: 'v1' })).to.equal(h);
    expect(templateHash({ ...spec, instanceType: 'm6i.xlarge' }, { version: 'v1' })).to.not.equal(h);
    expect(templateHash(spec, { version: 'v2' })).to.not.equal(h);
    expect(templateHash({ ...spec, additionalTags: { a: 'b' } }, { version: 'v1' })).to.equal(h);
  });

  it('image lookup: CAPA name pattern, architecture from the instance type, newest creation date', () => {
    expect(imageNamePattern({ instanceType: 'm6i.large' }, 'v1.31.4')).to.equal('capa-ami-ubuntu-24.04-?1.31.4-*');
    expect(imageNamePattern({ instanceType: 'm6i.large', imageLookupBaseOS: 'flatcar', imageLookupFormat: 'x-{{.K8sVersion}}-{{.BaseOS}}' }, 'v1.30.0')).to.equal('x-1.30.0-flatcar');
    expect(architectureOf('m6g.large')).to.equal('arm64');
    expect(architectureOf('c7gn.xlarge')).to.equal('arm64');
    expect(architectureOf('g4dn.xlarge')).to.equal('x86_64');
    expect(architectureOf('m6i.large')).to.equal('x86_64');
    expect(newestImage([{ ImageId: 'ami-a', CreationDate: '2025-01-01' }, { ImageId: 'ami-b', CreationDate: '2026-01-01' }])?.ImageId).to.equal('ami-b');
  });

  it('maxSurge / maxUnavailable: ints and percentages (surge rounds up, unavailable down)', () => {
    expect(resolveIntOrPercent(2, 10, true)).to.equal(2);
    expect(resolveIntOrPercent('25%', 10, true)).to.equal(3);
    expect(resolveIntOrPercent('25%', 10, false)).to.equal(2);
    expect(resolveIntOrPercent('x', 10, false)).to.equal(undefined);
  });

  it('spread and free slot ranges', () => {
    expect(spread(['a', 'b', 'c'], [], 5)).to.deep.equal(['a', 'b', 'c', 'a', 'b']);
    expect(spread(['a', 'b', 'c'], ['a', 'a'], 2)).to.deep.equal(['b', 'c']);
    expect(freeRange(new Set([0, 1, 3]), 1)).to.equal(2);
    expect(freeRange(new Set([0, 1, 3]), 2)).to.equal(4);
  });

  it('delete policies: Oldest, Newest, Random (deterministic from the names)', () => {
    const ms = [0, 1, 2, 3].map((s) => machine(s));
    expect(orderForRemoval(ms, 'Oldest').map((m) => m.slot)).to.deep.equal([0, 1, 2, 3]);
    expect(orderForRemoval(ms, 'Newest').map((m) => m.slot)).to.deep.equal([3, 2, 1, 0]);
    const r1 = orderForRemoval(ms, 'Random').map((m) => m.slot);
    expect(orderForRemoval([...ms].reverse(), 'Random').map((m) => m.slot)).to.deep.equal(r1);
  });

  it('a rolling round: surge first with maxUnavailable 0, removal first with maxSurge 0, never both limits broken', () => {
    const old = [0, 1, 2].map((s) => machine(s, { templateHash: 'old' }));
    const r1 = decideRound(group(), old);
    expect(r1.remove).to.deep.equal([]);
    expect(r1.launch).to.have.length(1);
    const pending = machine(0, { state: 'pending' });
    expect(decideRound(group(), [...old, pending])).to.deep.include({ remove: [], launch: [] });
    const r3 = decideRound(group(), [...old, machine(0)]);
    expect(r3.remove.map((m) => m.templateHash)).to.deep.equal(['old']);
    expect(r3.launch).to.have.length(1);
    const r4 = decideRound(group({ maxSurge: 0, maxUnavailable: 1 }), old);
    expect(r4.remove).to.have.length(1);
    expect(r4.launch).to.have.length(1);
    expect(decideRound(group(), [0, 1, 2].map((s) => machine(s))).settled).to.equal(true);
  });

  it('an upgrade: the control plane rolls one machine at a time, new first; workers replace nothing until no old control plane is left, but still scale', () => {
    const cp = group({ name: 'control-plane', owner: 'cp', role: 'control-plane', replicas: 3, hash: 'v2', oneAtATime: true });
    const oldCp = [0, 1, 2].map((s) => machine(s, { group: 'control-plane', role: 'control-plane', templateHash: 'v1' }));
    const md = group({ replicas: 3, hash: 'v2' });
    const oldMd = [0, 1].map((s) => machine(s, { templateHash: 'v1' }));
    const live = [...oldCp, ...oldMd];
    const decide = (machines: Machine[]) =>
      holdWorkersWhileControlPlaneRolls([cp, md].map((g) => ({ g, d: decideRound(g, machines.filter((m) => m.group === g.name)) })), machines);
    const [c1, w1] = decide(live);
    expect(c1!.d).to.deep.include({ remove: [] });
    expect(c1!.d.launch).to.have.length(1);
    // the worker group is one short of 3: it may launch that one, but removes no old worker
    expect(w1!.d.remove).to.deep.equal([]);
    expect(w1!.d.launch).to.have.length(1);
    expect(w1!.d.settled).to.equal(false);
    // the new control plane is up: one old control plane goes; still no worker replaced
    const [c2, w2] = decide([...live, machine(0, { group: 'control-plane', role: 'control-plane', templateHash: 'v2' }), machine(2)]);
    expect(c2!.d.remove.map((m) => m.templateHash)).to.deep.equal(['v1']);
    expect(w2!.d).to.deep.include({ remove: [], launch: [] });
    // every control plane new: the workers roll by their own strategy
    const newCp = [0, 1, 2].map((s) => machine(s, { group: 'control-plane', role: 'control-plane', templateHash: 'v2' }));
    const [c3, w3] = decide([...newCp, ...oldMd, machine(2)]);
    expect(c3!.d.settled).to.equal(true);
    expect(w3!.d.launch).to.have.length(1);
  });

  it('batch tokens: stable for the same batch, different for another range or after the group changed', () => {
    const b = { group: 'md', owner: 'md', role: 'node', hash: 'h', az: 'a', subnetId: 's', first: 0, count: 2, params: {} as Batch['params'], userData: '', knownIds: ['i-1'] } as Batch;
    expect(batchToken('c', b)).to.equal(batchToken('c', { ...b }));
    expect(batchToken('c', b)).to.not.equal(batchToken('c', { ...b, first: 2 }));
    expect(batchToken('c', b)).to.not.equal(batchToken('c', { ...b, knownIds: ['i-1', 'i-2'] }));
    expect(batchToken('c', b).length).to.be.at.most(64);
  });
});
