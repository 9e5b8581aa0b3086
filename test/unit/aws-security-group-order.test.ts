import { expect } from 'chai';
import type { SecurityGroup } from '@aws-sdk/client-ec2';
import { deletionOrder } from '../../src/aws/security-groups.js';

/** A group whose ingress rules name the given groups (and a CIDR rule, which never matters). */
function group(id: string, names: string[]): SecurityGroup {
  return {
    GroupId: id,
    IpPermissions: [
      { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '10.0.0.0/8' }] },
      ...names.map((n) => ({ IpProtocol: '-1', UserIdGroupPairs: [{ GroupId: n }] })),
    ],
  };
}

/** True when no group is deleted while one still standing (rules not revoked) names it: what AWS requires. */
function validOnAws(groups: SecurityGroup[], order: string[], revokeFrom: string[]): boolean {
  const names = new Map(groups.map((g) => [g.GroupId!, revokeFrom.includes(g.GroupId!) ? [] : (g.IpPermissions ?? []).flatMap((p) => (p.UserIdGroupPairs ?? []).map((u) => u.GroupId!))]));
  return order.every((id, i) => order.slice(i + 1).every((o) => o === id || !names.get(o)!.includes(id)));
}

describe('aws/security-groups: the order to delete groups in (AWS refuses a group another group names)', () => {
  const cases: Array<{ name: string; groups: SecurityGroup[]; revokes: number }> = [
    { name: 'no references: every group at once, no revoke', groups: [group('sg-a', []), group('sg-b', [])], revokes: 0 },
    { name: 'a group naming only itself: no revoke (a self-reference does not block its own delete)', groups: [group('sg-a', ['sg-a'])], revokes: 0 },
    { name: 'a chain (node names the ELB group): the naming group first, no revoke', groups: [group('sg-elb', []), group('sg-node', ['sg-elb', 'sg-node'])], revokes: 0 },
    {
      name: "capflow's four groups (control plane and nodes name each other, both name the bastion, the control plane names the API LB): one revoke",
      groups: [
        group('sg-bastion', []),
        group('sg-lb', []),
        group('sg-cp', ['sg-cp', 'sg-node', 'sg-lb', 'sg-bastion']),
        group('sg-node', ['sg-node', 'sg-cp', 'sg-bastion', 'sg-elb']),
        group('sg-elb', []),
      ],
      revokes: 1,
    },
    { name: 'a three-group ring: one revoke', groups: [group('sg-a', ['sg-b']), group('sg-b', ['sg-c']), group('sg-c', ['sg-a'])], revokes: 1 },
    { name: 'a group naming one outside the set: ignored (not ours to order)', groups: [group('sg-a', ['sg-outside'])], revokes: 0 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const { order, revokeFrom } = deletionOrder(c.groups);
      expect([...order].sort()).to.deep.equal(c.groups.map((g) => g.GroupId!).sort());
      expect(revokeFrom).to.have.length(c.revokes);
      expect(validOnAws(c.groups, order, revokeFrom), `order ${order.join(' ')}, revoke ${revokeFrom.join(' ')}`).to.equal(true);
    });
  }
});
