// Typed calls to the Rust side (desktop/src-tauri/src/commands.rs). The UI
// never talks to the server itself: data, sync and security are client-core's.

import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";

export interface CommandError {
  code: string;
  message: string;
}

export function isCommandError(e: unknown): e is CommandError {
  return typeof e === "object" && e !== null && "code" in e && "message" in e;
}

export function errorText(e: unknown): string {
  if (isCommandError(e)) return e.message;
  return String(e);
}

export interface SyncStatus {
  connected: boolean;
  pending_changes: number;
  last_sync_ms: number | null;
  last_error: string | null;
  last_error_ms: number | null;
  /** The last failure in plain words ("Can't reach the server"). */
  problem?: string | null;
  /** When sync tries again, while it waits after a failure. */
  next_retry_ms?: number | null;
}

export interface Session {
  state: "signed_out" | "signed_in" | "needs_sign_in" | "revoked";
  email: string | null;
  role: string | null;
  user_id: string | null;
  device_id: string | null;
  reason: string | null;
}

export interface AppInfo {
  server_url: string;
  /** A venue CA (PEM) trusted beside the system's roots. */
  server_ca_pem: string | null;
  /** SHA-256 pins of the server's key (base64). */
  server_pinned_keys: string[];
  data_dir: string;
  session: Session;
  status: SyncStatus;
}

export type SignInAnswer =
  | { status: "signed_in"; session: Session }
  | { status: "second_factor"; challenge: string }
  | { status: "enroll"; challenge: string };

export interface Enrollment {
  secret: string;
  otpauth_uri: string;
  qr_png_base64: string;
}

export interface EventSummary {
  document_id: string;
  event_id: string;
  name: string;
  starts_at: string;
  location: string;
}

export interface EventInfo {
  id: string;
  name: string;
  starts_at: string;
  location: string;
  annul_window_ms: number;
  /** IANA name; empty is UTC. The door rules read days and times in it. */
  time_zone?: string;
}

export interface CheckinList {
  id: string;
  name: string;
  allow_multiple_entries: boolean;
  allow_entry_after_exit: boolean;
  /** Entries from / until (Unix ms). */
  valid_from_ms: number | null;
  valid_until_ms: number | null;
  /** "sat,sun"; empty for every day. */
  weekdays: string;
  max_entries_per_day: number | null;
  /** "04:00": everyone inside is checked out then (the event's clock). */
  exit_all_at: string | null;
}

export interface EventDetails {
  document: string;
  info: EventInfo;
  lists: CheckinList[];
}

export interface ImportReport {
  imported: number;
  rejected: { line: number; message: string }[];
}

export interface ImportProgress {
  phase: "reading" | "writing";
  rows: number;
  total: number | null;
}

export interface Attendee {
  attendee_id: string;
  ticket_code: string;
  name: string;
  email: string;
  ticket_type: string;
  revoked: boolean;
}

export interface Scan {
  scan_id: string;
  attendee_id: string;
  list_id: string;
  direction: "entry" | "exit";
  device_id: string;
  staff_id: string;
  wall_ms: number;
  outcome: string;
  /** Admitted on a signed code's word. */
  by_signature: boolean;
  /** Payment was taken at the door. */
  payment_taken: boolean;
}

export interface Tablet {
  device_id: string;
  list_id: string | null;
  last_synced_ms: number | null;
  heard_ms: number;
  /** Whether it holds the event's whole document (null: an older app's beacon). */
  holds_event: boolean | null;
  /** Its changes and scans the server has not confirmed yet. */
  pending_uploads: number | null;
  app_version: string | null;
}

export interface Dashboard {
  expected: number;
  checked_in: number;
  inside: number;
  lists: { list: CheckinList; expected: number; checked_in: number; inside: number; tablets: Tablet[] }[];
  recent: Scan[];
  duplicates: { scan: Scan; original: Scan | null; attendee_name: string; ticket_code: string }[];
  other_tablets: Tablet[];
  report: CheckinReport;
}

export interface IssueTicketRequest {
  attendee_id: string;
  ticket_type: string;
  valid_from_ms: number | null;
  valid_until_ms: number | null;
}

export interface IssuedTicket {
  /** `TK1:` and base32: what the QR code holds. */
  code: string;
  public_key: string;
  issued_at_ms: number;
  qr_png_base64: string;
}

export interface CheckinReport {
  bucket_minutes: number;
  /** By list, then time. */
  arrivals: { list_id: string; start_ms: number; entries: number }[];
  peak: { start_ms: number; entries: number; per_minute: number } | null;
  devices: { device_id: string; entries: number; exits: number; duplicates: number; annulled: number; payments_taken: number; median_gap_ms: number | null }[];
  lists: { list_id: string; entries: number; exits: number; duplicates: number }[];
  ticket_types: { ticket_type: string; expected: number; checked_in: number; no_shows: number }[];
}

export interface User {
  id: string;
  email: string;
  role: string;
  totp_enrolled: boolean;
  disabled: boolean;
  events: string[];
}

export interface Device {
  id: string;
  user_id: string;
  name: string;
  app_version: string;
  created_ms: number;
  last_seen_ms: number;
  revoked_ms: number | null;
  online: boolean;
}

export interface AuditFilter {
  after: number;
  limit: number;
  action: string | null;
  actor: string | null;
  result: string | null;
  since: string | null;
}

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  action: string;
  result: string;
  target?: string | null;
  address?: string | null;
  device?: string | null;
  details?: unknown;
}

export interface AuditPage {
  entries: AuditEntry[];
  next_after: number | null;
}

export interface AuditVerification {
  valid: boolean;
  entries: number | null;
  problem: string | null;
}

/** `GET /api/status` (api-types' `ServerStatus`). */
export interface ServerStatus {
  version: string;
  git: string;
  started_at: string;
  uptime_s: number;
  store: {
    kind: string;
    latency_ms: number;
    schema_version: number;
    expected_version: number;
    migrations_pending: boolean;
  };
  documents_loaded: number;
  connections: number;
  devices_online: number;
  backups: {
    scheduled: boolean;
    every_s: number | null;
    count: number;
    last: { taken_at: string; age_s: number; bytes: number } | null;
    problem: string | null;
  };
  security_alerts_24h: number;
  last_security_alert: { at: string; kind: string; actor: string } | null;
}

export interface Settings {
  theme: string;
  language: string;
  default_checkin_list: string | null;
  sounds: boolean;
  notifications: boolean;
}

export interface Backup {
  id: string;
  taken_ms: number;
  settings: Settings;
}

export const api = {
  appInfo: () => invoke<AppInfo>("app_info"),
  setServer: (url: string, caPem: string | null = null, pinnedKeys: string[] = []) =>
    invoke<void>("set_server", { url, caPem, pinnedKeys }),
  signIn: (email: string, password: string) => invoke<SignInAnswer>("sign_in", { email, password }),
  submitCode: (challenge: string, code: string, recovery: boolean) =>
    invoke<Session>("submit_code", { challenge, code, recovery }),
  startEnrollment: (challenge: string) => invoke<Enrollment>("start_enrollment", { challenge }),
  confirmEnrollment: (challenge: string, code: string) =>
    invoke<{ session: Session; recovery_codes: string[] }>("confirm_enrollment", { challenge, code }),
  signOut: () => invoke<void>("sign_out"),
  stepUp: (code: string) => invoke<void>("step_up", { code }),
  syncStatus: () => invoke<SyncStatus>("sync_status"),
  listEvents: () => invoke<EventSummary[]>("list_events"),
  eventDetails: (documentId: string) => invoke<EventDetails>("event_details", { documentId }),
  saveEvent: (documentId: string | null, info: EventInfo) => invoke<string>("save_event", { documentId, info }),
  saveList: (documentId: string, list: CheckinList) => invoke<void>("save_list", { documentId, list }),
  importCsv: (documentId: string, path: string) => invoke<ImportReport>("import_csv", { documentId, path }),
  search: (documentId: string, query: string) => invoke<Attendee[]>("search", { documentId, query }),
  dashboard: (documentId: string) => invoke<Dashboard>("dashboard", { documentId }),
  exportReport: (documentId: string, path: string) => invoke<number>("export_report", { documentId, path }),
  ticketKey: (documentId: string) => invoke<string | null>("ticket_key", { documentId }),
  enableSignedTickets: (documentId: string) => invoke<string>("enable_signed_tickets", { documentId }),
  issueTicket: (documentId: string, request: IssueTicketRequest) => invoke<IssuedTicket>("issue_ticket", { documentId, request }),
  revokeSignedCodes: (documentId: string, attendeeId: string) => invoke<void>("revoke_signed_codes", { documentId, attendeeId }),
  users: () => invoke<User[]>("users"),
  createUser: (email: string, role: string, password: string) =>
    invoke<User>("create_user", { email, role, password }),
  updateUser: (id: string, role: string | null, disabled: boolean | null) =>
    invoke<void>("update_user", { id, role, disabled }),
  setUserEvents: (id: string, events: string[]) => invoke<void>("set_user_events", { id, events }),
  devices: () => invoke<Device[]>("devices"),
  revokeDevice: (id: string) => invoke<void>("revoke_device", { id }),
  audit: (filter: AuditFilter) => invoke<AuditPage>("audit", { filter }),
  verifyAudit: () => invoke<AuditVerification>("verify_audit"),
  serverStatus: () => invoke<ServerStatus>("server_status"),
  exportAudit: (since: string | null) => invoke<{ path: string; entries: number }>("export_audit", { since }),
  mySettings: () => invoke<{ document: string; settings: Settings }>("my_settings"),
  setSetting: (key: string, value: string | boolean) => invoke<void>("set_setting", { key, value }),
  settingsBackups: () => invoke<Backup[]>("settings_backups"),
  restoreSettingsBackup: (backupId: string) => invoke<void>("restore_settings_backup", { backupId }),
};

export function on<T>(event: string, handler: (payload: T) => void): Promise<UnlistenFn> {
  return listen<T>(event, (e) => handler(e.payload));
}
