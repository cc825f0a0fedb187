#!/usr/bin/env node
/**
 * `node dist/src/cli.js`: the entry README, the benches, the tests and --daemon run
 * directly. Like bin.ts, its only static import is the runtime check: the program
 * (command.ts and all it imports) is linked only once this Node.js is known to be
 * supported, so an old Node gets the one line, not a link error.
 */
import { supportedNode } from './runtime.js';

if (supportedNode()) await import('./command.js');
