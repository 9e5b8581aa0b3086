import { expect } from 'chai';
import { executors } from '../../executors/index.js';
import { executorModules } from '../../executors/lazy.js';

describe('executors/lazy: one step imported alone', () => {
  it('lists exactly the steps of executors/index.ts, each loading that same executor', async () => {
    expect(Object.keys(executorModules).sort()).to.deep.equal(executors.map((e) => e.id).sort());
    for (const e of executors) expect(await executorModules[e.id]!(), e.id).to.equal(e);
  });
});
