/**
 * `unhitch --help`: Hitch's usage shape, rendered at run time from the same option
 * references (table + defaults) that docs/configuration.md and the man pages come from.
 */
import { type OptionReference, optionReferences } from './reference.js';

/** The flags that are not options: the command's own. */
export const COMMAND_FLAGS: ReadonlyArray<{ readonly label: string; readonly meaning: string }> = [
  {
    label: '    --config=FILE',
    meaning: 'load a hitch.conf (or *.toml) file; flags override it',
  },
  { label: '-t, --test', meaning: 'check the configuration and certificates, then exit' },
  {
    label: '    --reload',
    meaning:
      'SIGHUP the unhitch named by --pidfile (or the pidfile of --config), wait for its verdict: exit 0 once the new configuration serves, 1 with the reason',
  },
  { label: '-V, --version', meaning: 'print the version and exit' },
  { label: '-h, --help', meaning: 'print this help and exit' },
];

const LABEL_WIDTH = 44;

function line(reference: OptionReference): string {
  const label = reference.flag ?? '';
  const padded = reference.spec.cli?.short ? label : `    ${label}`;
  const shown = /^(unset|none)\b/.test(reference.defaultText)
    ? ''
    : ` (default: ${reference.defaultText})`;
  return `${padded.padEnd(LABEL_WIDTH)} ${reference.meaning}${shown}`;
}

export function helpText(): string {
  const lines = [
    'Usage: unhitch [OPTIONS] [PEM...]',
    '',
    'A Hitch-compatible TLS terminating proxy.',
    '',
    ...COMMAND_FLAGS.map(({ label, meaning }) => `${label.padEnd(LABEL_WIDTH)} ${meaning}`),
    '',
  ];
  const withFlags = optionReferences().filter((reference) => reference.flag !== undefined);
  const section = (title: string, references: readonly OptionReference[]): void => {
    lines.push(title, ...references.map(line), '');
  };
  section(
    'Hitch options:',
    withFlags.filter((reference) => reference.origin !== 'unhitch only'),
  );
  section(
    'unhitch extensions:',
    withFlags.filter((reference) => reference.origin === 'unhitch only'),
  );
  lines.push(
    'PEM files given as arguments are added as pem-file (the last one is the default certificate).',
    'Every option, its hitch.conf and TOML form and whether a SIGHUP applies it: man unhitch.conf',
  );
  return `${lines.join('\n')}\n`;
}
