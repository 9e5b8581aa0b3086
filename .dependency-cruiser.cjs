/**
 * Import directions, checked on every build (npm run build):
 *   bin -> executors -> src;  src/core imports nothing of ours;  no cycles.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'Import cycles make initialisation order fragile.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'src-not-to-executors',
      severity: 'error',
      comment: 'executors/ may import src/, never the reverse: the library does not know its entry points.',
      from: { path: '^src/' },
      to: { path: '^(executors|bin)/' },
    },
    {
      name: 'core-imports-nothing-of-ours',
      severity: 'error',
      comment: 'src/core is the base every part uses; it depends on no other part.',
      from: { path: '^src/core/' },
      to: { path: '^(src/(?!core/)|executors/|bin/|test/)' },
    },
    {
      name: 'executors-not-to-bin',
      severity: 'error',
      from: { path: '^executors/' },
      to: { path: '^bin/' },
    },
    {
      name: 'production-not-to-tests',
      severity: 'error',
      comment: 'Test helpers never ship.',
      from: { path: '^(src|executors|bin)/' },
      to: { path: '^test/' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};
