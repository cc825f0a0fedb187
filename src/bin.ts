#!/usr/bin/env node
/**
 * The `unhitch` executable (package.json `bin` through packaging/npm/unhitch, the Debian package's
 * /usr/sbin/unhitch). Its only static import is the runtime check: ES modules are linked
 * before any of their code runs, so the program proper (command.ts and all it imports) is
 * loaded by a dynamic import once this Node.js is known to be supported.
 */
import { supportedNode } from './runtime.js';

if (supportedNode()) await import('./command.js');
