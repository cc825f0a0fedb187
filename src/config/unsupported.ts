/**
 * Options the config model holds (so Hitch configs load unchanged) but node cannot carry
 * out. Said once at startup and by --test, instead of being silently ignored.
 */
import type { ProxyConfig } from './model.js';

export interface UnsupportedSetting {
  readonly option: string;
  readonly message: string;
}

export function unsupportedSettings(config: ProxyConfig): UnsupportedSetting[] {
  const found: UnsupportedSetting[] = [];
  const note = (option: string, message: string): void => {
    found.push({ option, message: `${option}: ${message}` });
  };
  if (config.recvBufferBytes !== undefined || config.sendBufferBytes !== undefined) {
    note(
      config.recvBufferBytes !== undefined ? 'recv-bufsize' : 'send-bufsize',
      'node cannot set SO_RCVBUF/SO_SNDBUF on TCP sockets; the kernel defaults (net.ipv4.tcp_rmem/wmem) apply',
    );
  }
  if (config.tcpFastOpen)
    note(
      'tcp-fastopen',
      'node has no TCP_FASTOPEN option; enable it with sysctl net.ipv4.tcp_fastopen=3',
    );
  if (config.chroot !== undefined) {
    note(
      'chroot',
      "node has no chroot(2); use systemd RootDirectory= or the unit's ProtectSystem= hardening",
    );
  }
  return found;
}
