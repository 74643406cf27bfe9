// Type declarations for the sochdb Node.js bindings (index.js).

/// <reference types="node" />

export type Bytes = Buffer | Uint8Array | ArrayBuffer | string;

export interface OpenOptions {
  regionBytes?: number;
  memtableBytes?: number;
  cacheBytes?: number;
  busyTimeoutMs?: number;
  daemonPath?: string | Buffer | URL | null;
  /** Default true; false: NotFoundError when the database is missing. */
  createIfMissing?: boolean;
  /** e.g. 0o660; default 0o600. */
  fileMode?: number;
}

export interface TxnOptions {
  readonly?: boolean;
  /** true (default): SYNC, durable on return; false: ASYNC, durable within milliseconds. */
  sync?: boolean;
}

export interface RunOptions extends TxnOptions {
  retries?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
}

export interface ScanOptions {
  start?: Bytes | null;
  end?: Bytes | null;
  prefix?: Bytes | null;
}

export type Stats = Record<string, number | bigint>;

export class Database {
  readonly path: string;
  readonly closed: boolean;
  readonly regionPath: string;
  close(): void;
  begin(options?: TxnOptions): Transaction;
  transaction<T>(fn: (txn: Transaction) => T, options?: TxnOptions): T;
  run<T>(fn: (txn: Transaction) => T, options?: RunOptions): T;
  get(key: Bytes): Buffer | null;
  put(key: Bytes, value: Bytes, options?: { sync?: boolean }): void;
  delete(key: Bytes, options?: { sync?: boolean }): void;
  stats(): Stats;
}

export class Transaction {
  readonly db: Database;
  readonly readonly: boolean;
  readonly sync: boolean;
  readonly closed: boolean;
  put(key: Bytes, value: Bytes): void;
  delete(key: Bytes): void;
  get(key: Bytes): Buffer | null;
  has(key: Bytes): boolean;
  scan(options?: ScanOptions): Scan;
  commit(options?: { sync?: boolean }): void;
  abort(): void;
}

export class Scan implements IterableIterator<[Buffer, Buffer]> {
  [Symbol.iterator](): IterableIterator<[Buffer, Buffer]>;
  next(): IteratorResult<[Buffer, Buffer]>;
  return(): IteratorResult<[Buffer, Buffer]>;
  toArray(): Array<[Buffer, Buffer]>;
  close(): void;
}

export class SochdbError extends Error {
  constructor(code: number, reason: string, detail?: string);
  readonly code: number;
  readonly codeName: string;
  readonly reason: string;
  readonly detail: string;
}
export class NotFoundError extends SochdbError {}
export class ConflictError extends SochdbError {}
export class BusyError extends SochdbError {}
export class InvalidError extends SochdbError {}
export class CorruptError extends SochdbError {}
export class IoError extends SochdbError {}
export class NoMemoryError extends SochdbError {}
export class VersionError extends SochdbError {}
export class DaemonError extends SochdbError {}

export function open(dir: string | Buffer | URL, options?: OpenOptions): Database;
export function errorClass(code: number): typeof SochdbError;
export function libraryPath(): string | null;
export function candidatePaths(): string[];

export const codes: {
  OK: 0; NOTFOUND: 1; CONFLICT: 2; BUSY: 3; INVALID: 4;
  CORRUPT: 5; IO: 6; NOMEM: 7; VERSION: 8; DAEMON: 9;
};
export const CODE_NAMES: Record<number, string>;
export const MAX_KEY: number;
export const MAX_VALUE: number;
export const MAX_TXNS_PER_HANDLE: number;
