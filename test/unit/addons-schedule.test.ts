/** Addons run in dependency order: as soon as their dependencies finished, bounded, failures stop only their dependants. */
import { expect } from 'chai';
import { runInDependencyOrder } from '../../src/addons/schedule.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('addons: dependency order', () => {
  it('starts each addon once its dependencies finished, independent ones together, never more than the limit', async () => {
    const events: string[] = [];
    let running = 0;
    let peak = 0;
    const items = [
      { name: 'cni', dependsOn: [], ms: 30 },
      { name: 'ccm', dependsOn: [], ms: 5 },
      { name: 'csi', dependsOn: ['ccm'], ms: 5 },
      { name: 'ingress', dependsOn: ['cni'], ms: 5 },
      { name: 'monitoring', dependsOn: ['ingress', 'csi'], ms: 5 },
      { name: 'metrics', dependsOn: [], ms: 5 },
    ];
    const out = await runInDependencyOrder(items, async (i) => {
      running++;
      peak = Math.max(peak, running);
      events.push(`start ${i.name}`);
      await sleep(i.ms);
      events.push(`end ${i.name}`);
      running--;
    }, { concurrency: 2 });
    expect(peak).to.equal(2);
    expect(out.done).to.have.members(items.map((i) => i.name));
    for (const i of items) for (const d of i.dependsOn) expect(events.indexOf(`end ${d}`), `${d} before ${i.name}`).to.be.below(events.indexOf(`start ${i.name}`));
    // csi does not wait for the slow cni: it starts as soon as ccm is done
    expect(events.indexOf('start csi')).to.be.below(events.indexOf('end cni'));
  });

  it('a failure skips its dependants (transitively), lets the others finish, and is thrown naming the rest', async () => {
    const ran: string[] = [];
    const items = [
      { name: 'a', dependsOn: [] },
      { name: 'b', dependsOn: ['a'] },
      { name: 'c', dependsOn: ['b'] },
      { name: 'd', dependsOn: [] },
    ];
    let err: unknown;
    try {
      await runInDependencyOrder(items, async (i) => {
        ran.push(i.name);
        if (i.name === 'a') throw new Error('a broke');
      });
    } catch (e) {
      err = e;
    }
    expect(ran).to.have.members(['a', 'd']);
    expect((err as Error).message).to.equal('a broke (also: b skipped, as a failed; c skipped, as a failed)');
  });

  it('refuses a dependency that is not in the run and a cycle instead of waiting forever', async () => {
    await runInDependencyOrder([{ name: 'a', dependsOn: ['x'] }], async () => {}).then(
      () => expect.fail('no error'),
      (e: Error) => expect(e.message).to.include('depends on x'),
    );
    await runInDependencyOrder([{ name: 'a', dependsOn: ['b'] }, { name: 'b', dependsOn: ['a'] }], async () => {}).then(
      () => expect.fail('no error'),
      (e: Error) => expect(e.message).to.include('wait on each other'),
    );
  });
});
