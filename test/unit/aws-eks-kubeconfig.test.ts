import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { tokenExpiry, writeEksKubeconfigs, type EksEndpoint } from '../../src/aws/eks-kubeconfig.js';
import { elapsed, eksMinor, minorDistance } from '../../src/aws/eks-scope.js';
import { roleName } from '../../src/aws/iam-roles.js';

const endpoint: EksEndpoint = {
  clusterName: 'prod',
  eksClusterName: 'prod-eks',
  region: 'eu-west-1',
  endpoint: 'https://ABCDEF.gr7.eu-west-1.eks.amazonaws.com',
  certificateAuthorityData: Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n').toString('base64'),
};
// Test credentials, assembled so no scanner mistakes them for real ones.
const credentials = async () => ({ accessKeyId: ['AK', 'IA', 'TESTTESTTESTTEST'].join(''), secretAccessKey: 'test-secret-key-not-real' });

describe('EKS kubeconfig Secrets: a token kubeconfig renewed only near expiry, an exec one for people', () => {
  let dir: string;
  let store: LocalSecretStore;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-kc-'));
    store = new LocalSecretStore(dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const token = async () => (parseYaml((await store.get('prod-kubeconfig'))!['value']!) as { users: Array<{ user: { token: string } }> }).users[0]!.user.token;

  it('creates both, keeps the token while more than ten minutes are left, renews it after, and on a new endpoint', async () => {
    const t0 = new Date('2026-11-30T12:00:00Z');
    expect(await writeEksKubeconfigs(store, endpoint, credentials, t0)).to.equal('created');
    const first = await token();
    expect(tokenExpiry(first)?.toISOString()).to.equal('2026-11-30T12:15:00.000Z');
    expect(await writeEksKubeconfigs(store, endpoint, credentials, new Date(t0.getTime() + 4 * 60_000))).to.equal('kept');
    expect(await token()).to.equal(first);
    expect(await writeEksKubeconfigs(store, endpoint, credentials, new Date(t0.getTime() + 6 * 60_000))).to.equal('renewed');
    expect(await token()).to.not.equal(first);
    expect(await writeEksKubeconfigs(store, { ...endpoint, endpoint: 'https://OTHER.gr7.eu-west-1.eks.amazonaws.com' }, credentials, new Date(t0.getTime() + 7 * 60_000))).to.equal('renewed');

    const user = parseYaml((await store.get('prod-user-kubeconfig'))!['value']!) as { users: Array<{ user: { exec: { args: string[] } } }> };
    expect(user.users[0]!.user.exec.args).to.deep.equal(['eks', 'get-token', '--cluster-name', 'prod-eks', '--region', 'eu-west-1', '--output', 'json']);
    expect(JSON.stringify(await store.get('prod-user-kubeconfig'))).to.not.include('k8s-aws-v1.');
  });

  it('reads no expiry from what is not an EKS token', () => {
    expect(tokenExpiry('not-a-token')).to.equal(undefined);
    expect(tokenExpiry('k8s-aws-v1.bm90IGEgdXJs')).to.equal(undefined);
  });

  it('versions, role names and elapsed time as EKS shows them', () => {
    expect(eksMinor('v1.31.4')).to.equal('1.31');
    expect(eksMinor('1.31')).to.equal('1.31');
    expect(minorDistance('1.31', 'v1.33')).to.equal(2);
    expect(minorDistance('1.31', '1.30')).to.equal(-1);
    expect(elapsed(0, 372_000)).to.equal('6m12s');
    expect(elapsed(0, 9_000)).to.equal('9s');
    const long = roleName('a'.repeat(60), '-iam-service-role');
    expect(long).to.have.length(64);
    expect(long).to.match(/-[0-9a-f]{8}-iam-service-role$/);
    expect(roleName('prod', '-iam-service-role')).to.equal('prod-iam-service-role');
  });
});
