/**
 * hitch.conf text → entries (lexer + grammar), and the whole file → ProxyConfig through
 * the shared option table.
 */
import type { ProxyConfig } from '../model.js';
import { applyEntries, finalizeDraft } from '../options/apply.js';
import { type ConfigWarning, newDraft } from '../options/draft.js';
import type { Entry } from '../options/entry.js';
import { parseEntries } from './grammar.js';
import { tokenize } from './lexer.js';

/** hitch.conf text → entries (syntax only). */
export function hitchEntries(text: string, file: string): Entry[] {
  return parseEntries(tokenize(text, file), file);
}

export function parseHitchText(
  text: string,
  file: string,
): { config: ProxyConfig; warnings: ConfigWarning[] } {
  const draft = newDraft(file);
  applyEntries(draft, hitchEntries(text, file));
  return { config: finalizeDraft(draft), warnings: draft.warnings };
}
