import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { formatProblem, parseVarsFile, parseVarsText, validateClusterSpec } from '../../src/spec/index.js';
import { findVariables, originalOffset, substitute } from '../../src/spec/variables.js';
import { cleanupSpecFolders, displayRootOf, minimalAws, specFolder, AWS_CLUSTER, CLUSTER } from '../fixtures/spec/support.js';

const TEMPLATED_CLUSTER = `${CLUSTER.replace(/name: dev\n/g, 'name: ${CLUSTER_NAME}\n').replace('name: dev-control-plane', 'name: ${CLUSTER_NAME}-control-plane')}---
${AWS_CLUSTER.replace('name: dev', 'name: ${CLUSTER_NAME}').replace('region: us-east-1', 'region: ${AWS_REGION:=us-east-1}')}  sshKeyName: \${AWS_SSH_KEY_NAME:-default}
`;

describe('spec variables (clusterctl ${VAR} forms)', function () {
  this.timeout(30_000);
  after(cleanupSpecFolders);

  describe('substitution', () => {
    const cases: Array<{ name: string; text: string; vars: Record<string, string>; expected: string }> = [
      { name: 'a plain ${VAR} takes the value', text: 'a: ${X}', vars: { X: 'one' }, expected: 'a: one' },
      { name: 'a plain ${VAR} set to empty becomes empty', text: 'a: "${X}"', vars: { X: '' }, expected: 'a: ""' },
      { name: '${VAR:=default} uses the default when unset', text: 'a: ${X:=two}', vars: {}, expected: 'a: two' },
      { name: '${VAR:=default} uses the default when empty', text: 'a: ${X:=two}', vars: { X: '' }, expected: 'a: two' },
      { name: '${VAR:-default} uses the value when set', text: 'a: ${X:-two}', vars: { X: 'one' }, expected: 'a: one' },
      { name: '${VAR:-default} uses the default when unset', text: 'a: ${X:-two words}', vars: {}, expected: 'a: two words' },
      { name: '${VAR-default} keeps an empty value', text: 'a: "${X-two}"', vars: { X: '' }, expected: 'a: ""' },
      { name: 'several variables on one line are all replaced', text: '${A}-${B}-${A}', vars: { A: 'x', B: 'yy' }, expected: 'x-yy-x' },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const r = substitute(c.text, (n) => c.vars[n]);
        expect(r.text).to.equal(c.expected);
        expect(r.unset).to.deep.equal([]);
      });
    }

    it('offsets after a substituted value map back to the original line', () => {
      const text = 'name: ${CLUSTER_NAME}-cp # comment';
      const r = substitute(text, () => 'a-much-longer-cluster-name');
      const newOffset = r.text.indexOf('-cp');
      expect(originalOffset(r.replacements, newOffset)).to.equal(text.indexOf('-cp'));
      expect(originalOffset(r.replacements, r.text.indexOf('much'))).to.equal(text.indexOf('${'));
    });

    it('finds the variable names, operators and defaults', () => {
      expect(findVariables('${A} ${B:=x} ${C:-y z}').map((u) => [u.name, u.operator, u.fallback])).to.deep.equal([
        ['A', undefined, undefined],
        ['B', ':=', 'x'],
        ['C', ':-', 'y z'],
      ]);
    });
  });

  describe('env files', () => {
    it('reads KEY=value lines with comments, export, quotes and escapes', () => {
      const vars = parseVarsText(
        [
          '# a comment',
          '',
          'PLAIN=value # trailing comment',
          'export EXPORTED=yes',
          'DOUBLE="two words # not a comment"',
          "SINGLE='$literal \\n'",
          'ESCAPED="line1\\nline2 \\"q\\""',
          'EMPTY=',
          '  SPACED = padded  ',
        ].join('\n'),
      );
      expect(vars).to.deep.equal({
        PLAIN: 'value',
        EXPORTED: 'yes',
        DOUBLE: 'two words # not a comment',
        SINGLE: '$literal \\n',
        ESCAPED: 'line1\nline2 "q"',
        EMPTY: '',
        SPACED: 'padded',
      });
    });

    it('a malformed line is an input error naming file:line', () => {
      expect(() => parseVarsText('GOOD=1\nnot a variable\n', 'vars.env')).to.throw('vars.env:2: expected KEY=value');
    });

    it('parseVarsFile reads a file from disk', async () => {
      const dir = await specFolder({});
      const file = path.join(dir, 'vars.env');
      await writeFile(file, 'A=1\n');
      expect(await parseVarsFile(file)).to.deep.equal({ A: '1' });
    });
  });

  describe('loading a templated folder', () => {
    it('with a vars file, substitutes every form and validates', async () => {
      const dir = await specFolder(minimalAws({ 'cluster.yaml': TEMPLATED_CLUSTER }));
      const varsFile = path.join(dir, '..', 'vars.env');
      await writeFile(varsFile, 'CLUSTER_NAME=dev\n');
      const { model, problems } = await validateClusterSpec(dir, { varsFile, displayRoot: displayRootOf(dir) });
      expect(problems.map(formatProblem)).to.deep.equal([]);
      expect(model?.infrastructure.spec).to.include({ region: 'us-east-1', sshKeyName: 'default' });
    });

    it('with the process environment, takes values from it', async () => {
      const dir = await specFolder(minimalAws({ 'cluster.yaml': TEMPLATED_CLUSTER }));
      process.env.CLUSTER_NAME = 'dev';
      process.env.AWS_REGION = 'eu-central-1';
      try {
        const { model, problems } = await validateClusterSpec(dir, { useEnv: true, displayRoot: displayRootOf(dir) });
        expect(problems.map(formatProblem)).to.deep.equal([]);
        expect(model?.infrastructure.spec).to.include({ region: 'eu-central-1' });
      } finally {
        delete process.env.CLUSTER_NAME;
        delete process.env.AWS_REGION;
      }
    });

    it('explicit vars win over the environment, which wins over the vars file', async () => {
      const dir = await specFolder(minimalAws({ 'cluster.yaml': TEMPLATED_CLUSTER }));
      const varsFile = path.join(dir, '..', 'vars.env');
      await writeFile(varsFile, 'CLUSTER_NAME=dev\nAWS_REGION=from-file\nAWS_SSH_KEY_NAME=from-file\n');
      process.env.AWS_REGION = 'from-env';
      process.env.AWS_SSH_KEY_NAME = 'from-env';
      try {
        const { model } = await validateClusterSpec(dir, { varsFile, useEnv: true, vars: { AWS_SSH_KEY_NAME: 'explicit' }, displayRoot: displayRootOf(dir) });
        expect(model?.infrastructure.spec).to.include({ region: 'from-env', sshKeyName: 'explicit' });
      } finally {
        delete process.env.AWS_REGION;
        delete process.env.AWS_SSH_KEY_NAME;
      }
    });

    it('an unset variable without a default is one error naming every place it is used', async () => {
      const dir = await specFolder(minimalAws({ 'cluster.yaml': TEMPLATED_CLUSTER }));
      const { model, problems } = await validateClusterSpec(dir, { vars: {}, displayRoot: displayRootOf(dir) });
      expect(model).to.equal(undefined);
      expect(problems.map(formatProblem)).to.deep.equal([
        'clusters/test/cluster.yaml:4:9 variable CLUSTER_NAME is not set and has no default; used at clusters/test/cluster.yaml:4:9, clusters/test/cluster.yaml:11:11, clusters/test/cluster.yaml:15:11, clusters/test/cluster.yaml:20:9 hint: set CLUSTER_NAME in the --vars file or the environment, or write ${CLUSTER_NAME:=default}',
      ]);
    });

    it('variables with no substitution asked for are one error telling to pass --vars or --env', async () => {
      const dir = await specFolder(minimalAws({ 'cluster.yaml': TEMPLATED_CLUSTER }));
      const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
      expect(problems.map(formatProblem)).to.deep.equal([
        'clusters/test/cluster.yaml:4:9 the spec uses clusterctl variables (${CLUSTER_NAME}, ${AWS_REGION}, ${AWS_SSH_KEY_NAME}) but no values were given hint: pass --vars FILE (KEY=value lines) and/or --env to substitute them',
      ]);
    });

    it('problems after a substituted value are reported at the original file position', async () => {
      const templated = TEMPLATED_CLUSTER.replace('  sshKeyName:', '  sshKeyNme:');
      const dir = await specFolder(minimalAws({ 'cluster.yaml': templated }));
      const { problems } = await validateClusterSpec(dir, { vars: { CLUSTER_NAME: 'dev' }, displayRoot: displayRootOf(dir) });
      expect(problems.map(formatProblem)).to.deep.equal([
        'clusters/test/cluster.yaml:23:3 AWSCluster/dev spec.sshKeyNme: unknown field `sshKeyNme` (the API server would silently drop it); did you mean `sshKeyName`?',
      ]);
    });

    it('an unsupported ${...} expression is an error', async () => {
      const dir = await specFolder(minimalAws({ 'extra.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: ${X^^}\n' }));
      const { problems } = await validateClusterSpec(dir, { vars: {}, displayRoot: displayRootOf(dir) });
      expect(problems.map(formatProblem)).to.deep.equal([
        'clusters/test/extra.yaml:6:6 unsupported variable expression ${X^^}; use ${VAR}, ${VAR:=default} or ${VAR:-default}',
      ]);
    });
  });
});
