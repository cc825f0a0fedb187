#!/usr/bin/env node
/**
 * `node dist/bench/accept-modes.js`: bench/run/accept-modes.ts is the program (its header says what it
 * measures and its flags). Only the runtime check is imported statically, so an old
 * Node.js gets the one refusal line instead of a link error (src/bin.ts says why).
 */
import { supportedNode } from '../src/runtime.js';

if (supportedNode()) await import('./run/accept-modes.js');
