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
  /** The cost of every table scan closed in any process since the shared region was made. */
  scanStats(): ScanStats;
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
  /** Create a table (others see it once this transaction commits) and open it; columns[0] is the primary key. */
  createTable(name: string, columns: ColumnSpec[]): Table;
  /** Open a table as this snapshot holds it (NotFoundError if none); with columns, its exact schema or InvalidError. */
  openTable(name: string, columns?: ColumnSpec[] | null): Table;
  /** Append a nullable column (older rows read it as null); open the table again to use it. */
  addColumn(table: Table, column: { name: string; type: ColumnType }): void;
  putRow(table: Table, row: CellValue[] | Record<string, CellValue | undefined>): void;
  deleteRow(table: Table, pk: CellValue): void;
  /** The row's columns (default all) as an array, or null when there is no such row. */
  getRow(table: Table, pk: CellValue, options?: { columns?: Array<string | number> | null }): CellValue[] | null;
  scanTable(table: Table, options?: TableScanOptions): TableScan;
}

export class Scan implements IterableIterator<[Buffer, Buffer]> {
  [Symbol.iterator](): IterableIterator<[Buffer, Buffer]>;
  next(): IteratorResult<[Buffer, Buffer]>;
  return(): IteratorResult<[Buffer, Buffer]>;
  toArray(): Array<[Buffer, Buffer]>;
  close(): void;
}

/** 'int64' (number or bigint), 'double' (number), 'bytes' (Buffer), 'string' (string), or types.*. */
export type ColumnType = 'int64' | 'double' | 'bytes' | 'string' | 1 | 2 | 3 | 4;
export interface ColumnSpec {
  name: string;
  type: ColumnType;
  nullable?: boolean;
}
export interface TableColumn {
  readonly name: string;
  readonly type: 'int64' | 'double' | 'bytes' | 'string';
  readonly nullable: boolean;
}
/** A column's value: int64 reads back as a number when it is a safe integer, else a bigint; NULL is null. */
export type CellValue = number | bigint | string | Buffer | Uint8Array | null;
export type FilterOp = '==' | '<' | '<=' | '>' | '>=';
export interface TableScanOptions {
  start?: CellValue;
  end?: CellValue;
  columns?: Array<string | number> | null;
  where?: [string | number, FilterOp, CellValue] | [string | number, 'between', CellValue, CellValue] | null;
}
export type ScanStats = Record<
  'scans' | 'rows' | 'blocks_read' | 'blocks_skipped' | 'blocks_direct' | 'bytes_read' | 'bytes_decompressed',
  number | bigint
>;

export class Table {
  readonly db: Database;
  readonly name: string;
  readonly id: number;
  readonly columns: ReadonlyArray<TableColumn>;
  readonly closed: boolean;
  columnIndex(column: string | number): number;
  close(): void;
}

export class TableScan implements IterableIterator<CellValue[]> {
  readonly table: Table;
  /** The names of the columns each row holds. */
  readonly columns: string[];
  /** What the scan cost, once it is closed (null before). */
  readonly stats: ScanStats | null;
  [Symbol.iterator](): IterableIterator<CellValue[]>;
  next(): IteratorResult<CellValue[]>;
  return(): IteratorResult<CellValue[]>;
  toArray(): CellValue[][];
  close(): void;
}

export const types: { INT64: 1; DOUBLE: 2; BYTES: 3; STRING: 4 };

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
