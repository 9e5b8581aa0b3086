import { expect } from 'chai';
import { cidrProblem, contains, defaultLayout, firstFree, overlappingPairs, overlaps, parseCidr, splitCidr } from '../../src/core/cidr.js';

describe('aws/cidr: subnet layouts as the AWS provider computes them', () => {
  describe('defaultLayout', () => {
    const cases = [
      {
        name: 'three zones from 10.0.0.0/16 give three /20 public and three /18 private subnets (CAPA PreferPrivate)',
        vpc: '10.0.0.0/16',
        zones: ['a', 'b', 'c'],
        public: ['10.0.0.0/20', '10.0.16.0/20', '10.0.32.0/20'],
        private: ['10.0.64.0/18', '10.0.128.0/18', '10.0.192.0/18'],
      },
      {
        name: 'two zones from 10.0.0.0/16 give /19 public and /18 private subnets, leaving 10.0.192.0/18 unused',
        vpc: '10.0.0.0/16',
        zones: ['a', 'b'],
        public: ['10.0.0.0/19', '10.0.32.0/19'],
        private: ['10.0.64.0/18', '10.0.128.0/18'],
      },
      {
        name: 'one zone splits the block in halves',
        vpc: '192.168.0.0/24',
        zones: ['a'],
        public: ['192.168.0.0/25'],
        private: ['192.168.0.128/25'],
      },
      {
        name: 'four zones from 10.1.0.0/20 give /23 public and /23 private subnets',
        vpc: '10.1.0.0/20',
        zones: ['a', 'b', 'c', 'd'],
        public: ['10.1.0.0/25', '10.1.0.128/25', '10.1.1.0/25', '10.1.1.128/25'],
        private: ['10.1.2.0/23', '10.1.4.0/23', '10.1.6.0/23', '10.1.8.0/23'],
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const layout = defaultLayout(c.vpc, c.zones);
        expect(layout.map((l) => l.public)).to.deep.equal(c.public);
        expect(layout.map((l) => l.private)).to.deep.equal(c.private);
        expect(layout.map((l) => l.zone)).to.deep.equal(c.zones);
        const all = layout.flatMap((l) => [l.public, l.private]);
        expect(overlappingPairs(all), 'no two subnets overlap').to.deep.equal([]);
        for (const s of all) expect(contains(c.vpc, s), `${s} inside ${c.vpc}`).to.equal(true);
      });
    }

    it('PreferPublic swaps the roles: the large blocks become public', () => {
      const layout = defaultLayout('10.0.0.0/16', ['a', 'b', 'c'], 'PreferPublic');
      expect(layout.map((l) => l.public)).to.deep.equal(['10.0.64.0/18', '10.0.128.0/18', '10.0.192.0/18']);
      expect(layout.map((l) => l.private)).to.deep.equal(['10.0.0.0/20', '10.0.16.0/20', '10.0.32.0/20']);
    });
  });

  describe('splitCidr', () => {
    it('rounds the count up to a power of two, as CAPA does (100.64.0.0/16 into 3 gives /18s)', () => {
      expect(splitCidr('100.64.0.0/16', 3)).to.deep.equal(['100.64.0.0/18', '100.64.64.0/18', '100.64.128.0/18']);
    });
    it('one subnet is the block itself', () => {
      expect(splitCidr('1.1.0.0/16', 1)).to.deep.equal(['1.1.0.0/16']);
    });
    it('a block too small for the count is an error', () => {
      expect(() => splitCidr('10.0.0.0/31', 4)).to.throw(/cannot hold 4 subnets/);
    });
  });

  describe('overlap and containment', () => {
    const table: Array<[string, string, string, boolean]> = [
      ['a block overlaps itself', '10.0.0.0/16', '10.0.0.0/16', true],
      ['a block overlaps a block inside it', '10.0.0.0/16', '10.0.64.0/18', true],
      ['neighbours do not overlap', '10.0.0.0/20', '10.0.16.0/20', false],
      ['a larger block overlaps a smaller one at its end', '10.0.240.0/20', '10.0.0.0/16', true],
      ['different /8s do not overlap', '10.0.0.0/8', '11.0.0.0/8', false],
    ];
    for (const [name, a, b, want] of table) {
      it(name, () => {
        expect(overlaps(a, b)).to.equal(want);
        expect(overlaps(b, a)).to.equal(want);
      });
    }
    it('overlappingPairs names every overlapping pair by index and skips malformed blocks', () => {
      expect(overlappingPairs(['10.0.0.0/20', '10.0.16.0/20', '10.0.8.0/21', undefined, 'bogus', '10.0.0.0/16'])).to.deep.equal([
        [0, 2],
        [0, 5],
        [1, 5],
        [2, 5],
      ]);
    });
    it('containment: inside, equal, outside, larger', () => {
      expect(contains('10.0.0.0/16', '10.0.255.0/24')).to.equal(true);
      expect(contains('10.0.0.0/16', '10.0.0.0/16')).to.equal(true);
      expect(contains('10.0.0.0/16', '10.1.0.0/24')).to.equal(false);
      expect(contains('10.0.0.0/16', '10.0.0.0/15')).to.equal(false);
    });
  });

  describe('parsing', () => {
    it('reads a block and rejects malformed ones with a reason', () => {
      expect(parseCidr('10.0.0.0/16')).to.deep.equal({ base: 0x0a000000, prefix: 16 });
      expect(cidrProblem('10.0.0.0/16')).to.equal(undefined);
      expect(cidrProblem('10.0.0.0')).to.match(/not an IPv4 CIDR block/);
      expect(cidrProblem('10.0.300.0/16')).to.match(/not a valid/);
      expect(cidrProblem('10.0.1.0/16')).to.match(/host bits set.*10\.0\.0\.0\/16/);
    });
  });

  describe('firstFree', () => {
    it('finds the first block of a size that overlaps nothing taken', () => {
      expect(firstFree('10.0.0.0/16', 20, ['10.0.0.0/19', '10.0.32.0/19', '10.0.64.0/18', '10.0.128.0/18'])).to.equal('10.0.192.0/20');
    });
    it('answers undefined when the block is full', () => {
      expect(firstFree('10.0.0.0/16', 18, ['10.0.0.0/17', '10.0.128.0/17'])).to.equal(undefined);
    });
  });
});
