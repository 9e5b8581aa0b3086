// The EKS bearer token made without the aws CLI (src/aws/eks-token.ts), checked against the real
// `aws eks get-token` (the test bed's AWS CLI, botocore's signer): for the same credentials, cluster,
// region and second, the two tokens are the same string; and decoded, it is a presigned STS
// GetCallerIdentity URL whose signature covers x-k8s-aws-id.
import { expect } from 'chai';
import { EksTokenSource, makeEksToken, EKS_TOKEN_PREFIX } from '../../src/aws/eks-token.js';
import { isCapflowError } from '../../src/core/errors.js';
import { tmpdir } from 'node:os';
import { locateAwsCli } from '../../src/emulator/supervisor.js';
import { run } from '../support/tools.js';

// assembled at run time: an access-key-shaped literal would trip secret scanners
const ACCESS_KEY = ['AK', 'IA', 'CAPFLOWTESTKEY01'].join('');
const SECRET_KEY = ['capflow', 'test', 'secret', 'key', 'not', 'real'].join('/');

function decode(token: string): URL {
  expect(token.startsWith(EKS_TOKEN_PREFIX)).to.equal(true);
  const body = token.slice(EKS_TOKEN_PREFIX.length);
  expect(body).to.match(/^[A-Za-z0-9_-]+$/, 'base64url without padding');
  return new URL(Buffer.from(body, 'base64url').toString('utf8'));
}

describe('EKS token: a presigned STS GetCallerIdentity URL, as `aws eks get-token` makes it', function () {
  this.timeout(60_000);

  it('decodes to GetCallerIdentity at the regional STS endpoint, expiring in 60 s, signed with x-k8s-aws-id', async () => {
    const now = new Date('2026-11-30T12:34:56.789Z');
    const { token, expiresAt } = await makeEksToken({ clusterName: 'prod-eu', region: 'eu-west-1', credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY }, now });
    const url = decode(token);
    expect(url.host).to.equal('sts.eu-west-1.amazonaws.com');
    expect(url.pathname).to.equal('/');
    const q = Object.fromEntries(url.searchParams);
    expect(q).to.include({ Action: 'GetCallerIdentity', Version: '2011-06-15', 'X-Amz-Algorithm': 'AWS4-HMAC-SHA256', 'X-Amz-Date': '20261130T123456Z', 'X-Amz-Expires': '60' });
    expect(q['X-Amz-Credential']).to.equal(`${ACCESS_KEY}/20261130/eu-west-1/sts/aws4_request`);
    expect(q['X-Amz-SignedHeaders']!.split(';')).to.deep.equal(['host', 'x-k8s-aws-id']);
    expect(q['X-Amz-Signature']).to.match(/^[0-9a-f]{64}$/);
    expect(expiresAt.toISOString()).to.equal('2026-11-30T12:49:56.000Z');
    // the secret never travels; a session token does, as X-Amz-Security-Token
    expect(token).to.not.include(Buffer.from(SECRET_KEY).toString('base64url'));
    const withSession = decode((await makeEksToken({ clusterName: 'prod-eu', region: 'eu-west-1', credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY, sessionToken: 'session-1' }, now })).token);
    expect(withSession.searchParams.get('X-Amz-Security-Token')).to.equal('session-1');
  });

  it('is the very token the aws CLI makes for the same credentials, cluster, region and second', async () => {
    const aws = locateAwsCli();
    if (!aws) throw new Error('the AWS CLI is not installed: run bash testbed/install.sh');
    const r = await run(aws, ['eks', 'get-token', '--cluster-name', 'demo', '--region', 'us-east-1', '--output', 'json'], {
      // no config or credentials files of this machine's user: only the environment's
      env: { PATH: process.env.PATH, HOME: tmpdir(), AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null', AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET_KEY, AWS_EC2_METADATA_DISABLED: 'true', AWS_STS_REGIONAL_ENDPOINTS: 'regional' },
    });
    expect(r.code, r.stderr).to.equal(0);
    const theirs = (JSON.parse(r.stdout) as { status: { token: string } }).status.token;
    const date = decode(theirs).searchParams.get('X-Amz-Date')!;
    const now = new Date(`${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${date.slice(9, 11)}:${date.slice(11, 13)}:${date.slice(13, 15)}Z`);
    const ours = await makeEksToken({ clusterName: 'demo', region: 'us-east-1', credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY }, now });
    expect(ours.token).to.equal(theirs);
    // another cluster, another signature: the token is bound to its cluster
    const other = await makeEksToken({ clusterName: 'demo2', region: 'us-east-1', credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY }, now });
    expect(decode(other.token).searchParams.get('X-Amz-Signature')).to.not.equal(decode(theirs).searchParams.get('X-Amz-Signature'));
  });

  it('a token source reuses its token until a minute before EKS would refuse it, then signs anew', async () => {
    let t = Date.parse('2026-11-30T10:00:00Z');
    let resolved = 0;
    const source = new EksTokenSource(
      { clusterName: 'c1', region: 'us-east-1', credentials: async () => (resolved++, { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY }) },
      () => new Date(t),
    );
    const first = await source.token();
    t += 13 * 60_000;
    expect(await source.token()).to.equal(first);
    t += 60_000; // 14 minutes: within the last minute of its 15
    const second = await source.token();
    expect(second).to.not.equal(first);
    expect(decode(second).searchParams.get('X-Amz-Date')).to.equal('20261130T101400Z');
    expect(resolved).to.equal(2);
  });

  it('refuses a cluster name EKS would not have', async () => {
    try {
      await makeEksToken({ clusterName: 'bad name', region: 'us-east-1', credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY } });
      expect.fail('no error');
    } catch (err) {
      expect(isCapflowError(err) && err.code).to.equal('EKS_CLUSTER_NAME_INVALID');
    }
  });
});
