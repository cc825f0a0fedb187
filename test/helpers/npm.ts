/** npm itself: the one running `npm test` (npm_execpath), else the one on PATH. */
export function npmCommand(): [command: string, prefixArgs: string[]] {
  const cli = process.env.npm_execpath;
  return cli?.endsWith('.js') ? [process.execPath, [cli]] : ['npm', []];
}
