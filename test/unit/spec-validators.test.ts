import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Ajv } from 'ajv';
import { expect } from 'chai';
import { formatProblem, specHash, validateClusterSpec } from '../../src/spec/index.js';
import { generateValidators } from '../../src/spec/codegen.js';
import { kindInfo, type KindInfo } from '../../src/spec/kinds.js';
import { ajvOptions, convertCrdSchema } from '../../src/spec/schemas.js';
import { defaultLocations, SchemaRegistry, type GeneratedIndex } from '../../src/spec/validators.js';
import { pruneNulls } from '../../src/spec/validate.js';
import { examplesDir, fixturesDir } from '../fixtures/spec/support.js';

function compile(schema: Record<string, unknown>): (v: unknown) => { ok: boolean; errors: string[]; value: unknown } {
  const converted = convertCrdSchema({ type: 'object', properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, spec: schema } });
  const validate = new Ajv(ajvOptions(false)).compile(converted.schema);
  return (spec) => {
    const value = structuredClone({ spec });
    pruneNulls(value, converted.shape);
    const ok = validate(value);
    return { ok, errors: (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''}`), value: value.spec };
  };
}

describe('spec schemas (CRD → ajv)', () => {
  it('nullable: true admits null and keeps it', () => {
    const check = compile({ type: 'object', properties: { a: { type: 'string', nullable: true } } });
    expect(check({ a: null })).to.deep.include({ ok: true, value: { a: null } });
  });

  it('a null in a field that is not nullable is pruned, then its default applies', () => {
    const check = compile({ type: 'object', properties: { a: { type: 'string', default: 'x' } } });
    expect(check({ a: null })).to.deep.include({ ok: true, value: { a: 'x' } });
  });

  it('x-kubernetes-int-or-string admits integers and strings, nothing else', () => {
    const check = compile({ type: 'object', properties: { a: { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'string' }] } } });
    expect(check({ a: 3 }).ok).to.equal(true);
    expect(check({ a: '30%' }).ok).to.equal(true);
    expect(check({ a: 1.5 }).ok).to.equal(false);
    expect(check({ a: true }).ok).to.equal(false);
  });

  it('x-kubernetes-preserve-unknown-fields keeps unknown fields; elsewhere they are errors', () => {
    const check = compile({ type: 'object', properties: { open: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true }, closed: { type: 'object', properties: { a: { type: 'string' } } } } });
    expect(check({ open: { anything: { deep: 1 } } }).ok).to.equal(true);
    expect(check({ closed: { b: 1 } }).errors).to.deep.equal(['/spec/closed must NOT have additional properties']);
  });

  it('x-kubernetes-embedded-resource admits apiVersion, kind and metadata', () => {
    const check = compile({ type: 'object', properties: { obj: { type: 'object', 'x-kubernetes-embedded-resource': true, properties: { spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } } } });
    expect(check({ obj: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: {} } }).ok).to.equal(true);
  });

  it('known formats are checked, unknown formats and CEL rules are ignored without crashing', () => {
    const check = compile({
      type: 'object',
      'x-kubernetes-validations': [{ rule: 'self.a == self.b', message: 'never evaluated' }],
      properties: { t: { type: 'string', format: 'date-time' }, u: { type: 'string', format: 'made-up' }, n: { type: 'integer', format: 'int32' } },
    });
    expect(check({ t: '2024-01-02T03:04:05Z', u: 'whatever', n: 5 }).ok).to.equal(true);
    expect(check({ t: 'yesterday' }).ok).to.equal(false);
  });

  it('every served version of every supported kind converts and compiles', async function () {
    this.timeout(90_000);
    const registry = new SchemaRegistry(defaultLocations(), 'compile');
    for (const kind of ['Cluster', 'KubeadmControlPlane', 'AWSCluster', 'AWSManagedControlPlane', 'ByoHostInventory', 'ConfigMap']) {
      const info = kindInfo(kind) as KindInfo;
      for (const line of ['v1.10', 'v1.11'] as const) {
        const { served } = await registry.versions(info, line);
        expect(served.length, `${kind} ${line}`).to.be.greaterThan(0);
        for (const v of served) expect((await registry.validator(info, v, line)).origin).to.equal('compiled');
      }
    }
  });
});

describe('generated standalone validators', function () {
  this.timeout(60_000);
  let generatedDir = '';
  before(async () => {
    generatedDir = await mkdtemp(path.join(os.tmpdir(), 'capflow-gen-'));
    await generateValidators(defaultLocations({ generatedDir }));
  });
  after(async () => {
    await rm(generatedDir, { recursive: true, force: true });
  });

  const folders = [
    path.join(examplesDir, 'aws-self-managed'),
    path.join(examplesDir, 'aws-machinepool'),
    path.join(examplesDir, 'eks-managed'),
    path.join(examplesDir, 'byoh'),
    path.join(fixturesDir, 'broken'),
  ];
  // The CAPA v2.11 templates, judged by the v1.11 line (their variables from the fixture's vars file).
  const v211 = path.join(fixturesDir, 'upstream-v2.11');
  const varsFor = (dir: string): { varsFile?: string } => (dir.startsWith(v211) ? { varsFile: path.join(v211, 'cluster.vars') } : {});
  folders.push(path.join(v211, 'dualstack-ipv4-primary'), path.join(v211, 'ipv6'), path.join(v211, 'eks'));
  for (const dir of folders) {
    it(`give the same verdict as the runtime compiler for ${path.relative(path.join(examplesDir, '..', '..'), dir)}`, async () => {
      const generated = await validateClusterSpec(dir, { validators: 'generated', generatedDir, ...varsFor(dir) });
      const compiled = await validateClusterSpec(dir, { validators: 'compile', ...varsFor(dir) });
      expect(generated.problems.map(formatProblem)).to.deep.equal(compiled.problems.map(formatProblem));
      expect(generated.model && specHash(generated.model)).to.equal(compiled.model && specHash(compiled.model));
    });
  }

  it('are used when their fingerprint matches the CRD on disk', async () => {
    const registry = new SchemaRegistry(defaultLocations({ generatedDir }), 'auto');
    expect((await registry.validator(kindInfo('Cluster') as KindInfo, 'v1beta1')).origin).to.equal('generated');
  });

  it('exist for both schema lines, each judged by its own CRD (v1beta2 Cluster only in v1.11)', async () => {
    const registry = new SchemaRegistry(defaultLocations({ generatedDir }), 'generated');
    const cluster = kindInfo('Cluster') as KindInfo;
    expect((await registry.versions(cluster, 'v1.10')).served).to.deep.equal(['v1beta1']);
    expect((await registry.versions(cluster, 'v1.11')).served).to.deep.equal(['v1beta1', 'v1beta2']);
    const v1beta2 = await registry.validator(cluster, 'v1beta2', 'v1.11');
    expect(v1beta2.origin).to.equal('generated');
    expect(Object.keys(v1beta2.shape.p?.spec?.p?.controlPlaneRef?.p ?? {})).to.deep.equal(['apiGroup', 'kind', 'name']);
    const aws = kindInfo('AWSCluster') as KindInfo;
    const lb = async (line: 'v1.10' | 'v1.11'): Promise<string[]> =>
      Object.keys((await registry.validator(aws, 'v1beta2', line)).shape.p?.spec?.p?.controlPlaneLoadBalancer?.p ?? {});
    expect(await lb('v1.10')).to.not.include('targetGroupIPType');
    expect(await lb('v1.11')).to.include('targetGroupIPType');
  });

  it('a stale fingerprint falls back to compiling only that kind', async () => {
    const staleDir = await mkdtemp(path.join(os.tmpdir(), 'capflow-gen-stale-'));
    try {
      await cp(generatedDir, staleDir, { recursive: true });
      const indexFile = path.join(staleDir, 'index.json');
      const index = JSON.parse(await readFile(indexFile, 'utf8')) as GeneratedIndex;
      (index.kinds['Cluster@v1.10'] as { sha256: string }).sha256 = '0'.repeat(64);
      await writeFile(indexFile, JSON.stringify(index));
      const registry = new SchemaRegistry(defaultLocations({ generatedDir: staleDir }), 'auto');
      expect((await registry.validator(kindInfo('Cluster') as KindInfo, 'v1beta1')).origin).to.equal('compiled');
      expect((await registry.validator(kindInfo('AWSCluster') as KindInfo, 'v1beta2')).origin).to.equal('generated');
    } finally {
      await rm(staleDir, { recursive: true, force: true });
    }
  });

  it('a missing generated folder falls back to compiling', async () => {
    const registry = new SchemaRegistry(defaultLocations({ generatedDir: path.join(os.tmpdir(), 'capflow-no-such-dir') }), 'auto');
    expect((await registry.validator(kindInfo('ConfigMap') as KindInfo, 'v1')).origin).to.equal('compiled');
  });
});
