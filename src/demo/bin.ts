/**
 * `npm start`: the runtime check first (see src/bin.ts for why it is a separate module),
 * then the demo.
 */
import { supportedNode } from '../runtime.js';

if (supportedNode()) await import('./start.js');
