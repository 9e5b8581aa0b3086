/** Pure parts of upgrades and control plane removals: version order and etcdctl's member list. */
import { expect } from 'chai';
import { compareVersions, versionParts } from '../../src/bootstrap/cluster-version.js';
import { memberOf, parseMemberList } from '../../src/bootstrap/etcd-members.js';

describe('bootstrap: versions and etcd members', () => {
  it('orders versions by major, minor and patch (not as strings)', () => {
    expect(versionParts('v1.34.4')).to.deep.equal([1, 34, 4]);
    expect(compareVersions('v1.34.10', 'v1.34.9')).to.be.greaterThan(0);
    expect(compareVersions('v1.9.0', 'v1.10.0')).to.be.lessThan(0);
    expect(compareVersions('v1.34.4', '1.34.4')).to.equal(0);
  });

  it('reads etcdctl -w json --hex member lists, and keeps every digit of IDs printed as numbers', () => {
    const hex = parseMemberList(
      '{"header":{"cluster_id":"8e9e05c52164694d"},"members":[{"ID":"8E9E05C52164694D","name":"ip-10-0-1-5.ec2.internal","peerURLs":["https://10.0.1.5:2380"],"clientURLs":["https://10.0.1.5:2379"]},{"ID":"2f2a1b3c4d5e6f70","peerURLs":["https://10.0.2.7:2380"],"isLearner":true}]}',
    );
    expect(hex.map((m) => m.id)).to.deep.equal(['8e9e05c52164694d', '2f2a1b3c4d5e6f70']);
    expect(hex[1]).to.deep.include({ name: '', isLearner: true, clientURLs: [] });
    // 18446744073709551615 is 2^64 - 1: a JSON number would round it
    const dec = parseMemberList('{"members":[{"ID":18446744073709551615,"name":"a","peerURLs":[],"clientURLs":[]}]}');
    expect(dec[0]!.id).to.equal('ffffffffffffffff');
  });

  it("finds a machine's member by its Node name, else by the address of its peer URL", () => {
    const members = parseMemberList('{"members":[{"ID":"1","name":"ip-10-0-1-5.ec2.internal","peerURLs":["https://10.0.1.5:2380"]},{"ID":"2","name":"","peerURLs":["https://10.0.2.7:2380"]}]}');
    expect(memberOf(members, { privateDns: 'ip-10-0-1-5.ec2.internal', privateIp: '10.0.1.5' })?.id).to.equal('1');
    expect(memberOf(members, { privateDns: 'ip-10-0-2-7.ec2.internal', privateIp: '10.0.2.7' })?.id).to.equal('2');
    expect(memberOf(members, { privateDns: 'ip-10-0-3-9.ec2.internal', privateIp: '10.0.3.9' })).to.equal(undefined);
  });
});
