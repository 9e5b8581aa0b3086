// Issue 10 item 5: parsing in linear time (duplicate keys found by one walk, not the yaml
// package's quadratic check), and the size limits that refuse a huge folder before parsing.
import { expect } from 'chai';
import { formatProblem, validateClusterSpec } from '../../src/spec/index.js';
import { countDocuments, DEFAULT_SPEC_LIMITS, specLimits } from '../../src/spec/limits.js';
import { makeSpecFile, parseSpecFile } from '../../src/spec/yaml-source.js';
import { cleanupSpecFolders, displayRootOf, minimalAws, specFolder } from '../fixtures/spec/support.js';

/** A ConfigMap whose data map has `keys` keys (about 55 bytes each). */
function bigConfigMap(keys: number, name = 'big', extra = ''): string {
  const lines = ['apiVersion: v1', 'kind: ConfigMap', 'metadata:', `  name: ${name}`, 'data:'];
  for (let i = 0; i < keys; i++) lines.push(`  key${i}: "value-${i}-${'x'.repeat(30)}"`);
  return `${lines.join('\n')}\n${extra}`;
}

async function problemsOf(files: Record<string, string>, options: Parameters<typeof validateClusterSpec>[1] = {}): Promise<string[]> {
  const dir = await specFolder(files);
  const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir), ...options });
  return problems.filter((p) => p.severity === 'error').map(formatProblem);
}

describe('spec limits and linear parsing', function () {
  this.timeout(30_000);
  after(cleanupSpecFolders);

  describe('duplicate keys', () => {
    it('are reported at the repeated key with the line of the first, in block and flow maps, and the document is not used', () => {
      const text = 'a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\ne: {x: 1, y: 2, x: 3}\n';
      const { documents, issues } = parseSpecFile(makeSpecFile('/f.yaml', 'f.yaml', text));
      expect(documents).to.have.length(0);
      expect(issues.map((i) => [i.offset, i.message])).to.deep.equal([
        [text.indexOf('c: 3'), 'Map keys must be unique: "c" is already a key of this map at line 3'],
        [text.lastIndexOf('x: 3'), 'Map keys must be unique: "x" is already a key of this map at line 6'],
      ]);
    });

    it('as JSON keys, the way Kubernetes reads YAML: 1 and "1" are one key; keys of different maps do not clash; merge keys are no duplicates', () => {
      const clash = parseSpecFile(makeSpecFile('/f.yaml', 'f.yaml', 'a: {1: one, "1": two}\n'));
      expect(clash.issues.map((i) => i.message)).to.deep.equal(['Map keys must be unique: "1" is already a key of this map at line 1']);
      const text = 'b: {k: 1}\nc: {k: 2}\nbase: &b {p: 1}\nextra: &e {r: 3}\nd:\n  <<: *b\n  <<: *e\n  q: 2\n';
      const { documents, issues } = parseSpecFile(makeSpecFile('/f.yaml', 'f.yaml', text));
      expect(issues).to.deep.equal([]);
      expect(documents[0]?.value).to.deep.equal({ b: { k: 1 }, c: { k: 2 }, base: { p: 1 }, extra: { r: 3 }, d: { p: 1, r: 3, q: 2 } });
    });

    it('a key that cannot print (a newline or an escape in it) is shown quoted', () => {
      const text = '"a\\nb": 1\n"a\\nb": 2\n"\\e[31m": 1\n"\\e[31m": 2\n';
      const { issues } = parseSpecFile(makeSpecFile('/f.yaml', 'f.yaml', text));
      expect(issues.map((i) => i.message)).to.deep.equal([
        'Map keys must be unique: "a\\nb" is already a key of this map at line 1',
        'Map keys must be unique: "\\u001b[31m" is already a key of this map at line 3',
      ]);
    });

    it('through the loader: a yaml-syntax problem at file:line:column', async () => {
      const problems = await problemsOf(minimalAws({ 'extra.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  name: y\n' }));
      expect(problems).to.deep.equal(['clusters/test/extra.yaml:5:3 YAML: Map keys must be unique: "name" is already a key of this map at line 4']);
    });

    // 60,000 keys in one map (3 MB): the quadratic check takes over a minute on this machine,
    // the linear one about a second; the timeout only catches a return to quadratic time.
    it('a 60,000-key map with one duplicate at its end is parsed and the duplicate found (linear: well inside the timeout)', function () {
      this.timeout(30_000);
      const text = bigConfigMap(60_000, 'big', '  key7: again\n');
      const { documents, issues } = parseSpecFile(makeSpecFile('/f.yaml', 'f.yaml', text));
      expect(documents).to.have.length(0);
      expect(issues).to.have.length(1);
      expect(issues[0]?.message).to.equal('Map keys must be unique: "key7" is already a key of this map at line 13');
    });
  });

  // Each problem is located by its path; the lookup of a key in its map was a scan of the map, so
  // 40,000 problems in one 40,000-key map took most of a minute. It is an index now.
  it('40,000 problems in one map (ConfigMap values that are not strings) are each located, in linear time', async function () {
    this.timeout(30_000);
    const lines = ['apiVersion: v1', 'kind: ConfigMap', 'metadata:', '  name: numbers', 'data:', ...Array.from({ length: 40_000 }, (_, i) => `  key${i}: ${i}`)];
    const problems = await problemsOf(minimalAws({ 'numbers.yaml': `${lines.join('\n')}\n` }));
    expect(problems).to.have.length(40_000);
    expect(problems[39_999]).to.match(/^clusters\/test\/numbers\.yaml:40005:\d+ ConfigMap\/numbers data\.key39999: /);
  });

  describe('limits', () => {
    it('defaults: 2 MiB per file, 4 MiB per folder, 5,000 documents; the environment and the options override them', () => {
      expect(specLimits({}, {})).to.deep.equal({ maxFileBytes: 2 * 1024 * 1024, maxFolderBytes: 4 * 1024 * 1024, maxDocuments: 5000 });
      expect(specLimits({}, { CAPFLOW_SPEC_MAX_FILE_BYTES: '512KiB', CAPFLOW_SPEC_MAX_FOLDER_BYTES: '8 MiB', CAPFLOW_SPEC_MAX_DOCUMENTS: '20' })).to.deep.equal({
        maxFileBytes: 512 * 1024,
        maxFolderBytes: 8 * 1024 * 1024,
        maxDocuments: 20,
      });
      expect(specLimits({ maxDocuments: 7 }, { CAPFLOW_SPEC_MAX_DOCUMENTS: '20' }).maxDocuments).to.equal(7);
      expect(() => specLimits({}, { CAPFLOW_SPEC_MAX_FILE_BYTES: 'lots' })).to.throw(/CAPFLOW_SPEC_MAX_FILE_BYTES must be a whole number/);
      expect(() => specLimits({}, { CAPFLOW_SPEC_MAX_DOCUMENTS: '0' })).to.throw(/CAPFLOW_SPEC_MAX_DOCUMENTS/);
      expect(DEFAULT_SPEC_LIMITS.maxFileBytes).to.equal(2 * 1024 * 1024);
    });

    it('counts documents from the --- markers without parsing (an upper bound: a leading comment or directive is no document)', () => {
      expect(countDocuments('')).to.equal(0);
      expect(countDocuments('# only a comment\n')).to.equal(0);
      expect(countDocuments('a: 1\n')).to.equal(1);
      expect(countDocuments('a: 1\n---\nb: 1\n--- # c\nc: 1\n')).to.equal(3);
      expect(countDocuments('# head\n%YAML 1.1\n---\na: 1\n---\n')).to.equal(2);
      expect(countDocuments('a: |\n  ---\n  text\nb: "---"\n----\n')).to.equal(1);
    });

    it('a file over the limit is refused by its size alone, named, with the limit and how to raise it; nothing else is reported', async () => {
      const problems = await problemsOf(minimalAws({ 'big.yaml': bigConfigMap(3_000) }), { limits: { maxFileBytes: 64 * 1024 } });
      expect(problems).to.have.length(1);
      expect(problems[0]).to.match(/^clusters\/test\/big\.yaml the file is 1\d\d(\.\d)? KiB, over the limit of 64 KiB per file; it was not read hint: .*CAPFLOW_SPEC_MAX_FILE_BYTES/);
    });

    it('a folder over the limit is refused, naming its largest files', async () => {
      const files = minimalAws({ 'a.yaml': bigConfigMap(1_000, 'a'), 'b.yaml': bigConfigMap(1_000, 'b') });
      const problems = await problemsOf(files, { limits: { maxFolderBytes: 64 * 1024 } });
      expect(problems).to.have.length(1);
      expect(problems[0]).to.match(/^clusters\/test the folder's YAML files hold \d+(\.\d)? KiB, over the limit of 64 KiB per cluster folder \(largest: clusters\/test\/(a|b)\.yaml /);
      expect(problems[0]).to.include('CAPFLOW_SPEC_MAX_FOLDER_BYTES');
    });

    it('a folder with more documents than the limit is refused before parsing (100,000 documents: at once)', async () => {
      const doc = (i: number): string => `---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${i}\n`;
      const many = Array.from({ length: 100_000 }, (_, i) => doc(i)).join('');
      const problems = await problemsOf(minimalAws({ 'many.yaml': many }), { limits: { maxFileBytes: 16 * 1024 * 1024, maxFolderBytes: 16 * 1024 * 1024 } });
      expect(problems).to.have.length(1);
      expect(problems[0]).to.match(/^clusters\/test the folder holds 10000\d YAML documents, over the limit of 5000 per cluster folder \(most: clusters\/test\/many\.yaml 100000, /);
      const few = await problemsOf(minimalAws({ 'some.yaml': Array.from({ length: 30 }, (_, i) => doc(i)).join('') }), { limits: { maxDocuments: 20 } });
      expect(few[0]).to.match(/the folder holds 3\d YAML documents, over the limit of 20 per cluster folder/);
    });

    it('variables whose values grow the folder past its limit are refused before parsing', async () => {
      const files = minimalAws({ 'vars.yaml': `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: v\ndata:\n${Array.from({ length: 50 }, (_, i) => `  k${i}: "\${BIG}"`).join('\n')}\n` });
      const problems = await problemsOf(files, { vars: { BIG: 'x'.repeat(2_000) }, limits: { maxFolderBytes: 64 * 1024 } });
      expect(problems).to.have.length(1);
      expect(problems[0]).to.match(/^clusters\/test with its variables substituted, the folder's YAML holds \d+(\.\d)? KiB, over the limit of 64 KiB per cluster folder/);
    });

    it('a folder inside the limits loads as before', async () => {
      const dir = await specFolder(minimalAws({ 'cm.yaml': bigConfigMap(100) }));
      const { model, problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
      expect(problems.filter((p) => p.severity === 'error').map(formatProblem)).to.deep.equal([]);
      expect(model).to.not.equal(undefined);
    });
  });
});
