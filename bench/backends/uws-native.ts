/**
 * Loads uWebSockets.js's NATIVE addon from @trufflesuite/uws-js-unofficial, or explains why not.
 *
 * The package's src/uws.js silently falls back to a `ws`-based shim (dist/index) when
 * UWS_USE_FALLBACK is set or when binaries/uws_<platform>_<arch>_<ABI>.node does not load
 * (it ships binaries only up to Node 20, ABI 115). A benchmark backend on that shim would
 * measure `ws`, not uWS, so we load the binary ourselves and refuse instead of falling back.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

export interface UwsWebSocket<UserData> {
  send(message: string | ArrayBuffer, isBinary?: boolean): number | boolean;
  getUserData(): UserData;
  end(code?: number): void;
}

export interface UwsApp {
  ws<UserData>(
    pattern: string,
    behavior: {
      maxPayloadLength?: number;
      idleTimeout?: number;
      maxBackpressure?: number;
      upgrade?: (res: unknown, req: unknown, context: unknown) => void;
      open?: (ws: UwsWebSocket<UserData>) => void;
      message?: (ws: UwsWebSocket<UserData>, message: ArrayBuffer, isBinary: boolean) => void;
      close?: (ws: UwsWebSocket<UserData>, code: number, message: ArrayBuffer) => void;
    },
  ): UwsApp;
  listen(host: string, port: number, cb: (listenSocket: unknown) => void): UwsApp;
}

export interface UwsModule {
  App(): UwsApp;
  us_listen_socket_close(listenSocket: unknown): void;
}

export class UwsUnavailableError extends Error {
  readonly code = 'BENCH_UWS_NATIVE_UNAVAILABLE';
}

/** Path of the addon the package would try for this Node (same formula as its src/uws.js). */
export function nativeBinaryPath(): string {
  const packageJson = require.resolve('@trufflesuite/uws-js-unofficial/package.json');
  return join(
    dirname(packageJson),
    'binaries',
    `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`,
  );
}

export function loadNativeUws(): UwsModule {
  const fallbackFlag = process.env.UWS_USE_FALLBACK;
  if (fallbackFlag && ['true', 'True', 'TRUE', '1'].includes(fallbackFlag)) {
    throw new UwsUnavailableError(
      'UWS_USE_FALLBACK is set: @trufflesuite/uws-js-unofficial would use its ws-based shim, ' +
        'which is not uWebSockets; unset it to benchmark the uws backend',
    );
  }
  const binary = nativeBinaryPath();
  if (!existsSync(binary)) {
    throw new UwsUnavailableError(
      `no native uWebSockets.js addon for Node ${process.version} (ABI ${process.versions.modules}, ` +
        `${process.platform}-${process.arch}): ${binary} is missing. The package ships binaries ` +
        'only for Node ≤ 20 and would silently fall back to a ws-based shim, which would not be ' +
        'uWebSockets; use Node 20 or --backends=bittorrent-tracker',
    );
  }
  try {
    return require(binary) as UwsModule;
  } catch (err) {
    throw new UwsUnavailableError(
      `native uWebSockets.js addon ${binary} does not load (${(err as Error).message}); the ` +
        'package would silently fall back to a ws-based shim, so the uws backend is refused',
    );
  }
}
