import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { formatProblem, isCredentialName, parseVarsFile, parseVarsText, validateClusterSpec } from '../../src/spec/index.js';
import { findVariables, originalOffset, substitute } from '../../src/spec/variables.js';
import { cleanupSpecFolders, displayRootOf, minimalAws, specFolder, AWS_CLUSTER, CLUSTER } from '../fixtures/spec/support.js';

/** AWS's documented example key id and a PEM label, assembled here so no key-shaped text is committed. */
const FAKE_KEY_ID = ['AKIA', 'IOSFODNN7EXAMPLE'].join('');

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
      await writeFile(varsFile, 'CLUSTER_NAME=dev\nAWS_REGION=eu-west-1\nAWS_SSH_KEY_NAME=from-file\n');
      process.env.AWS_REGION = 'eu-west-2';
      process.env.AWS_SSH_KEY_NAME = 'from-env';
      try {
        const { model } = await validateClusterSpec(dir, { varsFile, useEnv: true, vars: { AWS_SSH_KEY_NAME: 'explicit' }, displayRoot: displayRootOf(dir) });
        expect(model?.infrastructure.spec).to.include({ region: 'eu-west-2', sshKeyName: 'explicit' });
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
        'clusters/test/cluster.yaml:4:9 variable CLUSTER_NAME is not set and has no default; used at clusters/test/cluster.yaml:4:9, clusters/test/cluster.yaml:11:11, clusters/test/cluster.yaml:15:11, clusters/test/cluster.yaml:20:9 hint: set CLUSTER_NAME in cluster.env beside the specs, the --vars file or the environment, or write ${CLUSTER_NAME:=default}',
      ]);
    });

    it('variables with no values anywhere are one error telling to write cluster.env or pass --vars or --env', async () => {
      const dir = await specFolder(minimalAws({ 'cluster.yaml': TEMPLATED_CLUSTER }));
      const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
      expect(problems.map(formatProblem)).to.deep.equal([
        'clusters/test/cluster.yaml:4:9 the spec uses clusterctl variables (${CLUSTER_NAME}, ${AWS_REGION}, ${AWS_SSH_KEY_NAME}) but no values were given hint: put KEY=value lines in cluster.env beside the specs, or pass --vars FILE and/or --env',
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
      const dir = await specFolder(minimalAws({ 'extra.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: ${X:?must be set}\n' }));
      const { problems } = await validateClusterSpec(dir, { vars: {}, displayRoot: displayRootOf(dir) });
      expect(problems.map(formatProblem)).to.deep.equal([
        "clusters/test/extra.yaml:6:6 bad variable expression ${X:?must be set}: ${X:?word} is not supported (clusterctl's envsubst reads it as a plain default, unlike the shell)",
      ]);
    });
  });

  describe('the whole envsubst syntax clusterctl uses', () => {
    const X = { X: 'abcdef', P: 'a/b/c', D: 'a-b-c', U: 'Hello World', OFF: '-2', LEN: '3', EMPTY: '' };
    const cases: Array<{ name: string; text: string; expected: string; vars?: Record<string, string> }> = [
      { name: '${VAR:offset} drops the first characters', text: '${X:2}', expected: 'cdef' },
      { name: '${VAR:offset:length} takes a slice (the ROSA templates cut the cluster name so)', text: '${X:0:3}', expected: 'abc' },
      { name: 'a slice reaching past the end stops at the end', text: '${X:4:10}', expected: 'ef' },
      { name: 'an offset past the end gives an empty value', text: '"${X:10}"', expected: '""' },
      { name: 'a negative offset (from a nested variable) counts from the end', text: '${X:${OFF}}', expected: 'ef' },
      { name: 'offset and length may come from variables', text: '${X:1:${LEN}}', expected: 'bcd' },
      { name: '${#VAR} is the length of the value', text: '${#X}', expected: '6' },
      { name: '${VAR^} uppercases the first character', text: '${X^}', expected: 'Abcdef' },
      { name: '${VAR^^} uppercases every character', text: '${X^^}', expected: 'ABCDEF' },
      { name: '${VAR,} lowercases the first character', text: '${U,}', expected: 'hello World' },
      { name: '${VAR,,} lowercases every character', text: '${U,,}', expected: 'hello world' },
      { name: '${VAR#glob} strips the shortest matching prefix', text: '${P#*/}', expected: 'b/c' },
      { name: '${VAR##glob} strips the longest matching prefix', text: '${P##*/}', expected: 'c' },
      { name: '${VAR%glob} strips the shortest matching suffix', text: '${P%/*}', expected: 'a/b' },
      { name: '${VAR%%glob} strips the longest matching suffix', text: '${P%%/*}', expected: 'a' },
      { name: 'a glob character class strips what it matches', text: '${X#[a-c]}', expected: 'bcdef' },
      { name: 'a negated glob class that does not match strips nothing', text: '${X#[^a]}', expected: 'abcdef' },
      { name: 'a glob ? matches one character', text: '${X#??}', expected: 'cdef' },
      { name: 'a prefix that does not match strips nothing', text: '${X#zz}', expected: 'abcdef' },
      { name: '${VAR/text/repl} replaces the first occurrence', text: '${D/-/_}', expected: 'a_b-c' },
      { name: '${VAR//text/repl} replaces every occurrence', text: '${D//-/_}', expected: 'a_b_c' },
      { name: '${VAR//text/} with an empty replacement removes every occurrence', text: '${D//-/}', expected: 'abc' },
      { name: '${VAR/#text/repl} replaces a leading occurrence only', text: '${D/#a/z}|${D/#b/z}', expected: 'z-b-c|a-b-c' },
      { name: '${VAR/%text/repl} replaces a trailing occurrence only', text: '${D/%c/z}|${D/%b/z}', expected: 'a-b-z|a-b-c' },
      { name: '${VAR/#text/} leaves the value as it is, as envsubst does', text: '${D/#a/}', expected: 'a-b-c' },
      { name: '\\/ in the text to replace is a literal slash', text: '${P//\\//-}', expected: 'a-b-c' },
      { name: 'replacement text is literal (no $& patterns)', text: '${D/-/$&}', expected: 'a$&b-c' },
      { name: 'a default may hold another variable', text: '${NOPE:-${X}-x}', expected: 'abcdef-x' },
      { name: 'a nested default is not needed when the variable is set', text: '${X:-${NOPE}}', expected: 'abcdef' },
      { name: '${VAR=default} takes the default for an empty value, as envsubst does', text: '${EMPTY=d}', expected: 'd' },
      { name: '$${ writes a literal ${ and substitutes nothing', text: 'echo $${HOME} ${X:0:1}', expected: 'echo ${HOME} a' },
      { name: 'a lone $ and $VAR without braces stay as written', text: 'cost $5 $X', expected: 'cost $5 $X' },
      // The $$ cases below are what drone/envsubst (clusterctl's) gives for the same text and values.
      { name: '$$ is one literal $ wherever it stands, as envsubst reads it', text: 'pid: $$ x: $$(date) $$X', expected: 'pid: $ x: $(date) $X' },
      { name: '$$ pairs collapse left to right: $$${VAR} is a $ then the value', text: '$$${X}|$$$$|a$$$b', expected: '$abcdef|$$|a$$b' },
      { name: '$$$${VAR} is a literal $${VAR}', text: '$$$${X}', expected: '$${X}' },
      { name: '$$ in the text and replacement of ${VAR/text/repl} is one $', text: '${M/$$/_}|${D//-/$$}', expected: 'a_b$|a$b$c', vars: { M: 'a$b$' } },
      { name: '$$ in a default is kept as written (envsubst does not unescape there)', text: '${NOPE:-a$$b}', expected: 'a$$b' },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const vars: Record<string, string> = { ...X, ...c.vars };
        const r = substitute(c.text, (n) => vars[n]);
        expect(r.errors).to.deep.equal([]);
        expect(r.unset).to.deep.equal([]);
        expect(r.text).to.equal(c.expected);
      });
    }

    it('a variable under ${VAR:offset:length} that is unset is reported unset (clusterctl would substitute an empty string)', () => {
      const r = substitute('name: ${CLUSTER_NAME:0:54}', () => undefined);
      expect(r.unset.map((u) => [u.name, u.operator])).to.deep.equal([['CLUSTER_NAME', ':']]);
    });

    it('offsets after escapes, slices and nested defaults map back to the original line', () => {
      const text = 'a: $${X} ${X:0:2} ${NOPE:-${X}} tail';
      const r = substitute(text, (n) => (n === 'X' ? 'abcdef' : undefined));
      expect(r.text).to.equal('a: ${X} ab abcdef tail');
      expect(originalOffset(r.replacements, r.text.indexOf('tail'))).to.equal(text.indexOf('tail'));
      expect(originalOffset(r.replacements, r.text.indexOf('{X}'))).to.equal(text.indexOf('{X}'));
      expect(originalOffset(r.replacements, r.text.indexOf('abcdef'))).to.equal(text.indexOf('${NOPE'));
    });

    it('finds nested variable uses too', () => {
      expect(findVariables('${A:-${B}} ${#C} ${D:0:${E}}').map((u) => [u.name, u.operator])).to.deep.equal([
        ['A', ':-'],
        ['B', undefined],
        ['C', '#len'],
        ['D', ':'],
        ['E', undefined],
      ]);
    });

    const bad: Array<{ name: string; text: string; message: string }> = [
      { name: '${VAR:?word} is refused (envsubst reads it as a default, the shell as an assertion)', text: '${X:?set it}', message: 'is not supported' },
      { name: '${VAR:+word} is refused for the same reason', text: '${X:+alt}', message: 'is not supported' },
      { name: 'an empty offset is refused', text: '${X:}', message: 'needs an offset' },
      { name: 'an offset that is not an integer is refused', text: '${X:a}', message: 'must be an integer' },
      { name: 'a negative length is refused (clusterctl crashes on it)', text: '${X:0:-1}', message: 'must not be negative' },
      { name: 'a strip without a pattern is refused', text: '${X#}', message: 'needs a pattern' },
      { name: 'a malformed glob is refused', text: '${X#[a}', message: 'bad pattern' },
      { name: 'a replacement without its second slash is refused', text: '${X/a}', message: 'needs the /' },
      { name: 'an expression without its closing brace is refused', text: 'a: ${X', message: 'missing closing }' },
      { name: 'an expression may not run over a line break', text: 'a: ${X:-one\n two}', message: 'must end on its line' },
      { name: 'a name must not start with a digit', text: '${1X}', message: 'expected a variable name' },
      { name: 'an unknown operator is refused', text: '${X^x}', message: 'unexpected' },
      { name: 'expressions nested too deep are refused, not a stack overflow', text: `${'${A:-'.repeat(40)}x${'}'.repeat(40)}`, message: 'nested more than' },
    ];
    for (const c of bad) {
      it(c.name, () => {
        const r = substitute(c.text, () => 'abcdef');
        expect(r.errors.map((e) => e.message).join('; ')).to.contain(c.message);
        expect(r.errors[0]?.start).to.equal(c.text.indexOf('${'));
      });
    }

    it('the ROSA machine pool template substitutes with its variables, the cluster name cut to 54 characters', () => {
      const r = substitute('spec:\n  rosaClusterName: ${CLUSTER_NAME:0:54}\n  version: "${OPENSHIFT_VERSION}"\n', (n) =>
        n === 'CLUSTER_NAME' ? 'c'.repeat(60) : n === 'OPENSHIFT_VERSION' ? '4.19.0' : undefined,
      );
      expect(r.text).to.equal(`spec:\n  rosaClusterName: ${'c'.repeat(54)}\n  version: "4.19.0"\n`);
    });
  });

  describe('escapes', () => {
    it('a file whose only ${ is escaped ($${) needs no values and keeps a literal ${', async () => {
      const dir = await specFolder(minimalAws({ 'extra.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  script: echo $${HOME}\n' }));
      const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
      expect(problems.filter((p) => p.severity === 'error').map(formatProblem)).to.deep.equal([]);
    });

    it('a malformed line of a --vars file names file:line and never quotes the line', () => {
      expect(() => parseVarsText('A=1\nroot:$6$s3cr3t:19000::::\n', 'vars.env'))
        .to.throw('vars.env:2: expected KEY=value')
        .with.property('message')
        .that.does.not.contain('s3cr3t');
    });
  });

  describe('values that would change the YAML structure (a line break refused, other syntax warned about, at the use)', () => {
    const configMap = (line: string): Record<string, string> => minimalAws({ 'extra.yaml': `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n${line}\n` });
    const refused: Array<{ name: string; line: string; value: string; problem: string }> = [
      {
        name: 'a value holding a line break and a key is refused',
        line: '  a: ${V}',
        value: 'x\n  injected: yes',
        problem: 'clusters/test/extra.yaml:6:6 the value of ${V} holds a line break, which would change the YAML structure here (new keys or documents) hint: keep variable values on one line',
      },
      {
        name: 'a value holding a line break is refused even inside quotes',
        line: '  a: "${V}"',
        value: 'x\ny',
        problem: 'clusters/test/extra.yaml:6:7 the value of ${V} holds a line break, which would change the YAML structure here (new keys or documents) hint: keep variable values on one line',
      },
      {
        name: 'a value that starts a comment (cutting the value short) is warned about',
        line: '  a: ${V}',
        value: 'kept # dropped',
        problem: `clusters/test/extra.yaml:6:6 warning: the value of \${V} does not stay one YAML value here: it holds YAML syntax (": ", " #", a quote, a comma or brackets) that changes the document's structure hint: quote the use ("\${V}") if it is meant as one value`,
      },
      {
        name: 'a value that is a flow mapping is warned about (clusterctl templates splice lists this way)',
        line: '  a: ${V}',
        value: '{b: c}',
        problem: `clusters/test/extra.yaml:6:6 warning: the value of \${V} does not stay one YAML value here: it holds YAML syntax (": ", " #", a quote, a comma or brackets) that changes the document's structure hint: quote the use ("\${V}") if it is meant as one value`,
      },
      {
        name: 'a value that closes its quotes early is warned about',
        line: '  a: "${V}"',
        value: 'x", "y',
        problem: `clusters/test/extra.yaml:6:7 warning: the value of \${V} does not stay one YAML value here: it holds YAML syntax (": ", " #", a quote, a comma or brackets) that changes the document's structure hint: quote the use ("\${V}") if it is meant as one value`,
      },
    ];
    for (const c of refused) {
      it(c.name, async () => {
        const dir = await specFolder(configMap(c.line));
        const { model, problems } = await validateClusterSpec(dir, { vars: { V: c.value }, displayRoot: displayRootOf(dir) });
        // a line break is refused; other YAML syntax is a warning (what it makes is then judged by the schemas)
        if (!c.problem.includes(' warning: ')) expect(model).to.equal(undefined);
        expect(problems.filter((p) => p.code === 'variable-value').map(formatProblem)).to.deep.equal([c.problem]);
      });
    }

    const accepted: Array<{ name: string; line: string; value: string }> = [
      { name: 'the same YAML syntax inside quotes stays one value and is accepted', line: '  a: "${V}"', value: 'kept # too, {b: c}' },
      { name: 'an ARN with colons is one plain value and is accepted', line: '  a: ${V}', value: 'arn:aws:iam::123456789012:role/x' },
      { name: 'a value inside a comment is not judged', line: '  a: b # ${V}', value: 'x: {y' },
      { name: 'a value inside a block scalar stays in it and is accepted', line: '  a: |\n    echo ${V}', value: 'it\'s "quoted" {b: c} # not a comment' },
    ];
    for (const c of accepted) {
      it(c.name, async () => {
        const dir = await specFolder(configMap(c.line));
        const { model, problems } = await validateClusterSpec(dir, { vars: { V: c.value }, displayRoot: displayRootOf(dir) });
        expect(problems.filter((p) => p.severity === 'error').map(formatProblem)).to.deep.equal([]);
        expect(model).to.not.equal(undefined);
      });
    }
  });

  describe('credentials are never substituted', () => {
    const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    const configMap = (line: string): Record<string, string> => minimalAws({ 'extra.yaml': `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n${line}\n` });

    it('a variable named like a credential is refused at its use, from the environment too, and its value is never printed', async () => {
      const dir = await specFolder(configMap('  a: ${AWS_SECRET_ACCESS_KEY}\n  b: ${GITHUB_TOKEN:-none}'));
      process.env.AWS_SECRET_ACCESS_KEY = SECRET;
      try {
        const { model, problems } = await validateClusterSpec(dir, { useEnv: true, displayRoot: displayRootOf(dir) });
        expect(model).to.equal(undefined);
        const lines = problems.map(formatProblem);
        expect(lines).to.deep.equal([
          'clusters/test/extra.yaml:6:6 variable AWS_SECRET_ACCESS_KEY looks like a credential and is never substituted into a spec; used at clusters/test/extra.yaml:6:6 hint: secrets travel as Kubernetes Secrets named in the spec, never as variables',
          'clusters/test/extra.yaml:7:6 variable GITHUB_TOKEN looks like a credential and is never substituted into a spec; used at clusters/test/extra.yaml:7:6 hint: secrets travel as Kubernetes Secrets named in the spec, never as variables',
        ]);
        expect(JSON.stringify(problems)).to.not.contain(SECRET);
      } finally {
        delete process.env.AWS_SECRET_ACCESS_KEY;
      }
    });

    it('a value holding the value of a credential variable of the environment is refused under any name (--env, use-env) and never printed', async () => {
      const dir = await specFolder(configMap('  a: ${OWNER}\n  b: x-${COPY:0:20}'));
      process.env.AWS_SECRET_ACCESS_KEY = SECRET;
      process.env.OWNER = SECRET;
      process.env.COPY = `prefix-${SECRET}`;
      try {
        const { model, problems } = await validateClusterSpec(dir, { useEnv: true, displayRoot: displayRootOf(dir) });
        expect(model).to.equal(undefined);
        expect(problems.map((p) => `${p.line}:${p.column} ${p.code}`)).to.deep.equal(['6:6 variable-secret', '7:8 variable-secret']);
        expect(JSON.stringify(problems)).to.not.contain(SECRET.slice(0, 12));
      } finally {
        delete process.env.AWS_SECRET_ACCESS_KEY;
        delete process.env.OWNER;
        delete process.env.COPY;
      }
    });

    it('a URL carrying a password is a credential value; a plain user@ is not', async () => {
      const dir = await specFolder(configMap('  a: "${REPO}"'));
      const refused = await validateClusterSpec(dir, { vars: { REPO: 'https://admin:pa55w0rd@git.example.com/x.git' }, displayRoot: displayRootOf(dir) });
      expect(refused.problems.map((p) => p.code)).to.deep.equal(['variable-secret']);
      expect(JSON.stringify(refused.problems)).to.not.contain('pa55w0rd');
      const fine = await validateClusterSpec(dir, { vars: { REPO: 'ssh://git@git.example.com:22/x.git' }, displayRoot: displayRootOf(dir) });
      expect(fine.problems.filter((p) => p.severity === 'error').map(formatProblem)).to.deep.equal([]);
    });

    it('a value shaped like a credential (an AWS access key id) is refused under any name and never printed', async () => {
      const dir = await specFolder(configMap('  a: ${OWNER}'));
      const { problems } = await validateClusterSpec(dir, { vars: { OWNER: FAKE_KEY_ID }, displayRoot: displayRootOf(dir) });
      expect(problems.map(formatProblem)).to.deep.equal([
        'clusters/test/extra.yaml:6:6 the value of OWNER looks like a credential (an access key id, a private key or a token) and is not substituted; used at clusters/test/extra.yaml:6:6 hint: secrets travel as Kubernetes Secrets named in the spec, never as variables',
      ]);
      expect(JSON.stringify(problems)).to.not.contain(FAKE_KEY_ID);
    });

    const names: Array<[string, boolean]> = [
      ['AWS_SECRET_ACCESS_KEY', true],
      ['AWS_ACCESS_KEY_ID', true],
      ['AWS_SESSION_TOKEN', true],
      ['GITHUB_TOKEN', true],
      ['DB_PASSWORD', true],
      ['SSH_PRIVATE_KEY', true],
      ['AWS_B64ENCODED_CREDENTIALS', true],
      ['KUBECONFIG', true],
      ['AWS_SSH_KEY_NAME', false],
      ['CLUSTER_NAME', false],
      ['AWS_CONTROL_PLANE_MACHINE_TYPE', false],
      ['OPERATOR_ROLES_PREFIX', false],
    ];
    for (const [name, credential] of names) {
      it(`${name} ${credential ? 'is' : 'is not'} a credential name`, () => {
        expect(isCredentialName(name)).to.equal(credential);
      });
    }
  });
});
