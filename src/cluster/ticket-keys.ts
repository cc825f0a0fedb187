/**
 * The session ticket key's owner. The primary alone makes, rotates and persists the key;
 * workers only receive it, so a ticket minted by any worker resumes on any other.
 */
import type { Logger } from 'pino';
import type { ProxyConfig } from '../config/model.js';
import { logCode } from '../errors.js';
import {
  generateTicketKey,
  loadOrCreateTicketKeyFile,
  readTicketKeyFile,
  saveTicketKeyFile,
} from '../tls/tickets.js';

export interface TicketKeyOwnerOptions {
  readonly config: ProxyConfig;
  readonly logger: Logger;
  /** Hands a new key to every worker that should switch to it. */
  readonly broadcast: (key: Buffer) => void;
}

export class TicketKeyOwner {
  private readonly logger: Logger;
  private readonly broadcast: (key: Buffer) => void;
  private key: Buffer;
  /** The key file of the configuration in force (it may change on reload). */
  private file: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: TicketKeyOwnerOptions) {
    this.logger = options.logger;
    this.broadcast = options.broadcast;
    this.file = options.config.ticketKeyFile;
    this.key = this.initialKey(options.config);
  }

  /** The key a newly started worker gets. */
  get current(): Buffer {
    return this.key;
  }

  /** (Re)starts rotation with the period and key file of `config`. */
  schedule(config: ProxyConfig): void {
    this.stop();
    this.file = config.ticketKeyFile;
    if (config.ticketRotationSec <= 0) return;
    this.timer = setInterval(() => this.rotate(), config.ticketRotationSec * 1000);
    this.timer.unref();
  }

  /**
   * SIGHUP: re-read `config`'s key file, so a key written to every node by hand (or by
   * configuration management) is taken without a restart. A changed key goes to every
   * live generation at once, as a rotation does. A file that cannot be read or parsed
   * is logged and the key in use stays: a half-copied file must never stop the node,
   * and a key nobody else has would only split it from the others.
   */
  reloadFile(config: ProxyConfig): void {
    const file = config.ticketKeyFile;
    if (file === undefined) return;
    let loaded: ReturnType<typeof readTicketKeyFile>;
    try {
      loaded = readTicketKeyFile(file);
    } catch (error) {
      logCode(
        this.logger,
        'UNHITCH_TICKET_KEY_RELOAD',
        { file, err: error },
        'cannot re-read the ticket key file; the current key stays',
      );
      return;
    }
    if (loaded.insecureMode) this.warnInsecure(file);
    if (loaded.key.equals(this.key)) return;
    this.key = loaded.key;
    this.broadcast(this.key);
    this.logger.info({ file }, 'session ticket key loaded from file');
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private initialKey(config: ProxyConfig): Buffer {
    if (config.ticketKeyFile === undefined) return generateTicketKey();
    const loaded = loadOrCreateTicketKeyFile(config.ticketKeyFile);
    if (loaded.insecureMode) this.warnInsecure(config.ticketKeyFile);
    return loaded.key;
  }

  private warnInsecure(file: string): void {
    logCode(
      this.logger,
      'UNHITCH_TICKET_KEY_INSECURE',
      { file },
      'ticket key file is readable by group or others',
    );
  }

  private rotate(): void {
    this.key = generateTicketKey();
    if (this.file !== undefined) this.save(this.file);
    // Every worker switches in the same tick: a ticket minted anywhere resumes anywhere.
    this.broadcast(this.key);
    this.logger.info('session ticket key rotated');
  }

  /**
   * A failed write must not stop the primary (this runs in a timer: a throw would end
   * the process and, through systemd, every connection). The rotation still happens:
   * the key's lifetime is the security property; what is lost while the disk refuses
   * is only resumption across a restart. The next rotation tries the file again.
   */
  private save(file: string): void {
    try {
      saveTicketKeyFile(file, this.key);
    } catch (error) {
      logCode(
        this.logger,
        'UNHITCH_TICKET_KEY_SAVE',
        { file, err: error },
        'cannot write the rotated ticket key; serving with it, the file keeps the previous key',
      );
    }
  }
}
