#!/usr/bin/env node
/** Entry of a VPC's router process (the test bed's load balancers; see src/emulator/vpc-router.ts). */
import { runVpcRouter } from '../src/emulator/vpc-router.js';

runVpcRouter();
