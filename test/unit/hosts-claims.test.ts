import { expect } from 'chai';
import { claimSecretName, planClaims, type HostClaim, type MachineGroupWant } from '../../src/hosts/claims.js';
import type { InventoryHost } from '../../src/spec/index.js';

const host = (name: string, role: string, address = `10.0.0.${name.replace(/\D/g, '') || '1'}`): InventoryHost => ({
  name,
  address,
  port: 22,
  user: 'capflow',
  hostKey: 'ssh-ed25519 AAAA',
  labels: { 'capflow.io/role': role },
});
const group = (name: string, replicas: number, role: string): MachineGroupWant => ({ group: name, replicas, matches: (l) => l['capflow.io/role'] === role });
const claim = (h: InventoryHost, cluster: string, group: string, claimedAt: string, state: HostClaim['state'] = 'claimed'): HostClaim => ({
  host: h.name,
  address: h.address,
  port: h.port,
  cluster,
  group,
  claimedAt,
  state,
});
const names = (xs: Array<{ group: string; host: InventoryHost }>): string[] => xs.map((x) => `${x.group}:${x.host.name}`);
const released = (xs: HostClaim[]): string[] => xs.map((c) => `${c.group}:${c.host}`);

describe('hosts/claims', () => {
  const cp0 = host('cp0', 'cp', '10.0.0.10');
  const w1 = host('w1', 'worker');
  const w2 = host('w2', 'worker');
  const w3 = host('w3', 'worker');
  const hosts = [cp0, w1, w2, w3];
  const groups = [group('control-plane', 1, 'cp'), group('md-0', 2, 'worker')];

  describe('planClaims', () => {
    it('a fresh cluster claims matching hosts in inventory order', () => {
      const plan = planClaims(hosts, groups, [], 'a');
      expect(names(plan.keep)).to.deep.equal([]);
      expect(names(plan.claim)).to.deep.equal(['control-plane:cp0', 'md-0:w1', 'md-0:w2']);
      expect(plan.release).to.deep.equal([]);
      expect(plan.short).to.deep.equal([]);
    });

    it('a rerun keeps its claims and claims nothing', () => {
      const claims = [claim(cp0, 'a', 'control-plane', '2026-01-01T00:00:00Z'), claim(w2, 'a', 'md-0', '2026-01-01T00:00:01Z'), claim(w3, 'a', 'md-0', '2026-01-01T00:00:02Z')];
      const plan = planClaims(hosts, groups, claims, 'a');
      // Its own claims stay (w2, w3), even though w1 comes first in the inventory.
      expect(names(plan.keep)).to.deep.equal(['control-plane:cp0', 'md-0:w2', 'md-0:w3']);
      expect(plan.claim).to.deep.equal([]);
      expect(plan.release).to.deep.equal([]);
      expect(planClaims(hosts, groups, claims, 'a')).to.deep.equal(plan);
    });

    it('scaling down releases the newest claims first', () => {
      const claims = [claim(w3, 'a', 'md-0', '2026-01-01T00:00:01Z'), claim(w1, 'a', 'md-0', '2026-01-01T00:00:03Z'), claim(w2, 'a', 'md-0', '2026-01-01T00:00:02Z')];
      const plan = planClaims(hosts, [group('md-0', 1, 'worker')], claims, 'a');
      expect(names(plan.keep)).to.deep.equal(['md-0:w3']);
      expect(released(plan.release)).to.deep.equal(['md-0:w1', 'md-0:w2']);
      expect(plan.claim).to.deep.equal([]);
    });

    it('a host gone from the inventory, or no longer matching, is released and replaced', () => {
      const claims = [claim(w1, 'a', 'md-0', '2026-01-01T00:00:01Z'), claim(w2, 'a', 'md-0', '2026-01-01T00:00:02Z')];
      const relabelled = { ...w2, labels: { 'capflow.io/role': 'cp' } };
      const plan = planClaims([cp0, relabelled, w3], groups, claims, 'a');
      expect(names(plan.keep)).to.deep.equal([]);
      expect(released(plan.release)).to.deep.equal(['md-0:w2', 'md-0:w1']);
      // w2 is still claimed (its release is pending), so the control plane does not get it.
      expect(names(plan.claim)).to.deep.equal(['control-plane:cp0', 'md-0:w3']);
      expect(plan.short).to.deep.equal([{ group: 'md-0', want: 2, have: 1, candidates: ['w3'] }]);
    });

    it('a host claimed by another cluster, or by another group of this one, is never picked', () => {
      const everyone = group('any', 1, 'worker');
      const claims = [claim(w1, 'b', 'md-0', '2026-01-01T00:00:00Z'), claim(w2, 'a', 'md-0', '2026-01-01T00:00:00Z')];
      const plan = planClaims(hosts, [group('md-0', 1, 'worker'), everyone], claims, 'a');
      expect(names(plan.keep)).to.deep.equal(['md-0:w2']);
      expect(names(plan.claim)).to.deep.equal(['any:w3']);
      // Cluster b's claims are b's: never released by a.
      expect(plan.release).to.deep.equal([]);
    });

    it('reports short supply with the candidates, and releasing claims are neither kept nor picked (but finished)', () => {
      const claims = [claim(w1, 'b', 'md-0', '2026-01-01T00:00:00Z'), claim(w2, 'a', 'md-0', '2026-01-01T00:00:00Z', 'releasing')];
      const plan = planClaims(hosts, [group('md-0', 3, 'worker')], claims, 'a');
      expect(names(plan.keep)).to.deep.equal([]);
      expect(names(plan.claim)).to.deep.equal(['md-0:w3']);
      expect(released(plan.release)).to.deep.equal(['md-0:w2']);
      expect(plan.short).to.deep.equal([{ group: 'md-0', want: 3, have: 1, candidates: ['w1', 'w2', 'w3'] }]);
    });

    it("a group gone from the spec gives its hosts back", () => {
      const claims = [claim(w1, 'a', 'md-old', '2026-01-01T00:00:00Z')];
      const plan = planClaims(hosts, groups, claims, 'a');
      expect(released(plan.release)).to.deep.equal(['md-old:w1']);
      expect(names(plan.claim)).to.deep.equal(['control-plane:cp0', 'md-0:w2', 'md-0:w3']);
    });
  });

  describe('claimSecretName', () => {
    const valid = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
    it('is capflow-host-<address>-<port> for a plain address, lowercased', () => {
      expect(claimSecretName('10.0.10.21', 2222)).to.equal('capflow-host-10.0.10.21-2222');
      expect(claimSecretName('Worker-1.Lab.Example.com', 22)).to.equal('capflow-host-worker-1.lab.example.com-22');
    });

    it('stays a valid, unique secret name whatever the address', () => {
      const addresses = ['fd00::1', 'fd00--1', 'fe80::1%eth0', 'a..b', '.lead', 'trail.', 'under_score', 'x'.repeat(300), 'x'.repeat(299) + 'y', 'host-22', 'host'];
      const seen = new Map<string, string>();
      for (const a of addresses) {
        for (const port of [22, 2222]) {
          const n = claimSecretName(a, port);
          expect(n.length, n).to.be.at.most(253);
          expect(valid.test(n), n).to.equal(true);
          expect(seen.get(n), `${a}:${port} and ${seen.get(n)} share ${n}`).to.equal(undefined);
          seen.set(n, `${a}:${port}`);
        }
      }
      expect(claimSecretName('fd00::1', 22)).to.match(/^capflow-host-fd00--1-22-[0-9a-f]{10}$/);
    });
  });
});
