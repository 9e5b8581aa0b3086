import { expect } from 'chai';
import { Writable } from 'node:stream';
import { redact, redactString, REDACTED } from '../../src/core/redact.js';
import { createLogger } from '../../src/core/logger.js';

// Test material only: made-up values in the shapes real secrets have.
// Built from parts so that no file of the repository holds a key-shaped literal.
const ARMOUR = ['RSA', 'PRIVATE', 'KEY'].join(' ');
const AKID = ['AKIA', 'ABCDEFGHIJKLMNOP'].join('');
const PEM = [`-----BEGIN ${ARMOUR}-----`, 'MIIEowIBAAKCAQEAx1b2c3d4e5f6g7h8i9j0', 'kLmNoPqRsTuVwXyZ', `-----END ${ARMOUR}-----`].join('\n');
const KUBECONFIG = `apiVersion: v1
kind: Config
clusters:
- cluster: {server: https://127.0.0.1:6443}
  name: dev
users:
- name: admin
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t
    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0t
`;

// assembled at run time, so no key-shaped text is committed
const CERT_KEY = ['a3', 'cb'].join('').repeat(16);

describe('core/redact: secrets never reach logs', () => {
  const cases: Array<[string, string, string]> = [
    ['a PEM private key block', `key is ${PEM} done`, 'MIIEowIBAAKCAQEA'],
    ['a kubeadm bootstrap token', 'joining with abcdef.0123456789abcdef now', 'abcdef.0123456789abcdef'],
    ['an AWS access key id', `using ${AKID}`, AKID],
    ['a bearer token', 'Authorization: Bearer s3cr3t-t0ken-value-123', 's3cr3t-t0ken-value-123'],
    ['a token field', 'token: 0123456789abcdefdeadbeef', '0123456789abcdefdeadbeef'],
    ['client-key-data in YAML', 'client-key-data: LS0tLS1CRUdJTiBSU0E=', 'LS0tLS1CRUdJTiBSU0E='],
    ['a JWT', 'sa token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlLXZhbHVl', 'eyJhbGciOiJSUzI1NiJ9'],
    ['a kubeadm certificate key flag', `--control-plane --certificate-key ${CERT_KEY}`, CERT_KEY],
    ['a kubeadm certificateKey field', `certificateKey: "${CERT_KEY}"`, CERT_KEY],
    ['a GitHub token', 'push with ghp_abcdefghijklmnopqrstuvwxyz0123', 'ghp_abcdefghijklmnopqrstuvwxyz0123'],
  ];
  for (const [what, input, secret] of cases) {
    it(`removes ${what}`, () => {
      const out = redactString(input);
      expect(out).to.not.include(secret);
      expect(out).to.include(REDACTED);
    });
  }

  it('replaces a whole kubeconfig', () => {
    const out = redactString(KUBECONFIG);
    expect(out).to.not.include('LS0tLS1CRUdJTiBDRVJU');
    expect(out).to.include('kubeconfig');
  });

  it('leaves ordinary operator text alone', () => {
    const text = 'Creating NAT gateway nat-0abc in subnet-0123 (us-east-1a), 3 of 3 ready';
    expect(redactString(text)).to.equal(text);
  });

  it('redacts fields named like secrets whatever their value, deeply', () => {
    const out = redact({ vpcId: 'vpc-1', nested: { password: 'hunter2', caKey: 'x', list: [{ sessionToken: 'abc' }] }, userData: '#cloud-config' });
    expect(out).to.deep.equal({ vpcId: 'vpc-1', nested: { password: REDACTED, caKey: REDACTED, list: [{ sessionToken: REDACTED }] }, userData: REDACTED });
  });

  it('the logger redacts messages and fields, in JSON and pretty formats', () => {
    for (const format of ['json', 'pretty'] as const) {
      let text = '';
      const stream = new Writable({ write(chunk, _enc, cb) { text += String(chunk); cb(); } });
      const log = createLogger({ format, stream, level: 'debug' });
      log.info(`Writing kubeconfig ${KUBECONFIG}`, { token: 'abcdef.0123456789abcdef', detail: `with ${PEM}` });
      log.child({ clusterName: 'dev' }).warn(`Using key ${AKID}`);
      expect(text, format).to.not.match(/LS0tLS1|abcdef\.0123456789abcdef|MIIEowIBAAKCAQEA|AKIA[A-Z]{16}/);
      expect(text, format).to.include('clusterName');
      if (format === 'json') {
        const lines = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
        expect(lines).to.have.length(2);
        expect(lines[0]).to.include({ level: 'info', token: REDACTED });
      }
    }
  });
});
