#!/usr/bin/env node
/**
 * `node dist/bench/wt-load/main.js`: wt-load/program.ts is the load generator (its header
 * has the flags). Only the runtime check is imported statically, so an old Node.js gets
 * the one refusal line instead of a link error (src/bin.ts says why).
 */
import { supportedNode } from '../../src/runtime.js';

if (supportedNode()) await import('./program.js');
